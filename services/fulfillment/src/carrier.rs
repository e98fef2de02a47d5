//! The simulated carrier: deterministic by address like the payment gateway is by token, with
//! fault knobs on top.
//!
//! Country `XX` is a region the carrier does not serve and postal code `00000` an address it
//! cannot deliver to: both are refused at booking, before anything is picked. Every other address
//! is deliverable. The knobs add a refusal rate, latency (added to every step's schedule) and a
//! transient error rate (1 is a carrier outage: every call fails and is retried).

use std::time::Duration;

use oms_contracts::messages::FailReason;
use oms_contracts::ShippingAddress;
use uuid::Uuid;

/// Fault knobs of the simulated carrier (the API type, shared with omsctl).
pub use oms_contracts::api::CarrierKnobs as Knobs;

/// The carrier's answer to a booking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Booking {
    /// It will take the parcel.
    Accepted,
    /// It will not, for this reason.
    Refused(FailReason),
}

/// The carrier could not answer this time (worth retrying).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("carrier unavailable: {0}")]
pub struct Transient(pub String);

/// The booking an address stands for, before any knob.
pub fn decide_by_address(address: Option<&ShippingAddress>) -> Booking {
    match address {
        Some(a) if a.country == "XX" => Booking::Refused(FailReason::RegionNotServed),
        Some(a) if a.postal_code.trim() == "00000" => {
            Booking::Refused(FailReason::AddressUndeliverable)
        }
        _ => Booking::Accepted,
    }
}

/// The tracking number the carrier gives a shipment (stable: asking again gives the same).
pub fn tracking_number(shipment_id: Uuid) -> String {
    let simple = shipment_id.simple().to_string().to_ascii_uppercase();
    format!("SIM{}", &simple[simple.len() - 12..])
}

/// The simulated carrier, with knobs shared with the HTTP API.
#[derive(Debug, Clone, Default)]
pub struct Simulated {
    knobs: oms_runtime::knobs::Shared<Knobs>,
}

impl Simulated {
    /// Current knobs.
    pub fn knobs(&self) -> Knobs {
        self.knobs.get()
    }

    /// Replaces the knobs (validate them first).
    pub fn set_knobs(&self, knobs: Knobs) {
        self.knobs.set(knobs);
    }

    /// The latency knob, added to every step's schedule.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.knobs().latency_ms)
    }

    fn call(&self, what: &str) -> Result<(), Transient> {
        let rate = self.knobs().error_rate;
        if rate > 0.0 && fastrand::f64() < rate {
            return Err(Transient(format!("simulated transient error ({what})")));
        }
        Ok(())
    }

    /// Books a shipment to `address`.
    pub fn book(&self, address: Option<&ShippingAddress>) -> Result<Booking, Transient> {
        self.call("booking")?;
        let booking = decide_by_address(address);
        let rate = self.knobs().failure_rate;
        if booking == Booking::Accepted && rate > 0.0 && fastrand::f64() < rate {
            return Ok(Booking::Refused(FailReason::CarrierRejected));
        }
        Ok(booking)
    }

    /// Hands a picked parcel over; the carrier's tracking number.
    pub fn hand_over(&self, shipment_id: Uuid) -> Result<String, Transient> {
        self.call("hand-over")?;
        Ok(tracking_number(shipment_id))
    }

    /// Asks whether the parcel was delivered (the simulation delivers every parcel it has).
    pub fn delivered(&self) -> Result<(), Transient> {
        self.call("tracking")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(postal_code: &str, country: &str) -> ShippingAddress {
        ShippingAddress {
            line1: "Hauptstraße 1".into(),
            city: "Berlin".into(),
            postal_code: postal_code.into(),
            country: country.into(),
        }
    }

    #[test]
    fn test_addresses_decide_the_booking() {
        assert_eq!(decide_by_address(None), Booking::Accepted);
        assert_eq!(
            decide_by_address(Some(&address("10115", "DE"))),
            Booking::Accepted
        );
        assert_eq!(
            decide_by_address(Some(&address("10115", "XX"))),
            Booking::Refused(FailReason::RegionNotServed)
        );
        assert_eq!(
            decide_by_address(Some(&address("00000", "DE"))),
            Booking::Refused(FailReason::AddressUndeliverable)
        );
    }

    #[test]
    fn knobs_refuse_fail_and_slow_down() {
        let carrier = Simulated::default();
        let good = address("10115", "DE");
        assert_eq!(carrier.book(Some(&good)), Ok(Booking::Accepted));
        carrier.set_knobs(Knobs {
            failure_rate: 1.0,
            ..Knobs::default()
        });
        assert_eq!(
            carrier.book(Some(&good)),
            Ok(Booking::Refused(FailReason::CarrierRejected))
        );
        carrier.set_knobs(Knobs {
            error_rate: 1.0,
            latency_ms: 250,
            ..Knobs::default()
        });
        assert!(carrier.book(Some(&good)).is_err());
        assert!(carrier.hand_over(Uuid::nil()).is_err());
        assert!(carrier.delivered().is_err());
        assert_eq!(carrier.latency(), Duration::from_millis(250));
    }

    #[test]
    fn tracking_numbers_are_stable_per_shipment() {
        let id = Uuid::from_u128(0x0192_f0c4_5a1e_7cc0_8000_0000_0000_00bb);
        assert_eq!(tracking_number(id), tracking_number(id));
        assert_eq!(tracking_number(id), "SIM0000000000BB");
        assert_ne!(tracking_number(id), tracking_number(Uuid::from_u128(1)));
    }
}
