//! Fault knobs of a simulated outside system (the payment gateway, the carrier): one value
//! shared by the HTTP API that sets it and the code that reads it on every call.

use std::sync::{Arc, RwLock};

/// Knobs of type `T`, cloned cheaply, read and replaced whole.
#[derive(Debug, Clone, Default)]
pub struct Shared<T>(Arc<RwLock<T>>);

impl<T: Copy> Shared<T> {
    /// The knobs in force.
    pub fn get(&self) -> T {
        match self.0.read() {
            Ok(k) => *k,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Replaces them (validate them first).
    pub fn set(&self, knobs: T) {
        match self.0.write() {
            Ok(mut k) => *k = knobs,
            Err(poisoned) => *poisoned.into_inner() = knobs,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_value() {
        let a: Shared<u32> = Shared::default();
        let b = a.clone();
        a.set(7);
        assert_eq!(b.get(), 7);
    }
}
