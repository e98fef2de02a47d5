//! Every route of the services' APIs, defined once beside its bodies: which service serves it,
//! its method, its path as the routers and the OpenAPI documents spell it, and (as type
//! parameters) the body it takes and the body it answers with. The services' routers, omsctl,
//! the TUI, the tests' stack and the OpenAPI test all read these, so a route cannot drift
//! between them.

use std::fmt;
use std::marker::PhantomData;

use crate::api::{
    CancelSaga, CarrierKnobs, CreateOrder, GatewayKnobs, Liveness, NotificationView, OrderAccepted,
    OrderView, Page, PaymentView, PendingRow, ProductView, Readiness, ReservationView, SagaAction,
    SagaSummary, SagaView, SetStock, ShipmentView,
};
use crate::ServiceId;

/// An HTTP method the APIs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    /// Reads.
    Get,
    /// Creates or acts.
    Post,
    /// Replaces.
    Put,
}

impl Method {
    /// The method as HTTP writes it (`GET`).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A route without its body types: what lists of routes hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteSpec {
    /// The service that serves it.
    pub service: ServiceId,
    /// Its method.
    pub method: Method,
    /// Its path template, parameters in braces: `/orders/{id}`.
    pub path: &'static str,
}

impl RouteSpec {
    /// The path with its parameters filled in, in order, each percent-encoded (anything but
    /// letters, digits and `-._~`). `None` when the count of values is not the count of
    /// parameters.
    pub fn path_with(&self, values: &[&str]) -> Option<String> {
        let mut out = String::with_capacity(self.path.len() + 40);
        let mut rest = self.path;
        let mut values = values.iter();
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}')? + open;
            out.push_str(&rest[..open]);
            encode_into(&mut out, values.next()?);
            rest = &rest[close + 1..];
        }
        out.push_str(rest);
        values.next().is_none().then_some(out)
    }

    /// How many `{parameters}` the path has.
    pub fn parameters(&self) -> usize {
        self.path.matches('{').count()
    }
}

impl fmt::Display for RouteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} ({})", self.method, self.path, self.service.name())
    }
}

fn encode_into(out: &mut String, value: &str) {
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// A route with the body it takes (`B`, `()` for none) and the body it answers with (`A`).
pub struct Route<B, A> {
    /// Service, method and path.
    pub spec: RouteSpec,
    bodies: PhantomData<fn(B) -> A>,
}

impl<B, A> Route<B, A> {
    const fn new(service: ServiceId, method: Method, path: &'static str) -> Self {
        Self {
            spec: RouteSpec {
                service,
                method,
                path,
            },
            bodies: PhantomData,
        }
    }

    /// The path with its parameters filled in (see [`RouteSpec::path_with`]).
    pub fn path_with(&self, values: &[&str]) -> Option<String> {
        self.spec.path_with(values)
    }
}

impl<B, A> Clone for Route<B, A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<B, A> Copy for Route<B, A> {}

impl<B, A> fmt::Debug for Route<B, A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.spec, f)
    }
}

use Method::{Get, Post, Put};
use ServiceId::{Fulfillment, Inventory, Notification, Order, Payment, Saga};

/// `POST /orders`: place an order (`Idempotency-Key` makes a retry safe).
pub const CREATE_ORDER: Route<CreateOrder, OrderAccepted> = Route::new(Order, Post, "/orders");
/// `GET /orders`: a page of orders.
pub const LIST_ORDERS: Route<(), Page<OrderView>> = Route::new(Order, Get, "/orders");
/// `GET /orders/{id}`: one order.
pub const GET_ORDER: Route<(), OrderView> = Route::new(Order, Get, "/orders/{id}");
/// `POST /orders/{id}/cancel`: ask for an order's cancellation.
pub const CANCEL_ORDER: Route<(), OrderView> = Route::new(Order, Post, "/orders/{id}/cancel");
/// `GET /shipments`: a page of shipments.
pub const LIST_SHIPMENTS: Route<(), Page<ShipmentView>> =
    Route::new(Fulfillment, Get, "/shipments");
/// `GET /shipments/{order_id}`: an order's shipment.
pub const GET_SHIPMENT: Route<(), ShipmentView> =
    Route::new(Fulfillment, Get, "/shipments/{order_id}");
/// `GET /carrier/faults`: the simulated carrier's fault knobs.
pub const GET_CARRIER_FAULTS: Route<(), CarrierKnobs> =
    Route::new(Fulfillment, Get, "/carrier/faults");
/// `PUT /carrier/faults`: set them (`{}` resets).
pub const SET_CARRIER_FAULTS: Route<CarrierKnobs, CarrierKnobs> =
    Route::new(Fulfillment, Put, "/carrier/faults");
/// `GET /payments`: a page of payments.
pub const LIST_PAYMENTS: Route<(), Page<PaymentView>> = Route::new(Payment, Get, "/payments");
/// `GET /payments/{order_id}`: an order's payment.
pub const GET_PAYMENT: Route<(), PaymentView> = Route::new(Payment, Get, "/payments/{order_id}");
/// `GET /gateway/faults`: the simulated payment gateway's fault knobs.
pub const GET_GATEWAY_FAULTS: Route<(), GatewayKnobs> = Route::new(Payment, Get, "/gateway/faults");
/// `PUT /gateway/faults`: set them (`{}` resets).
pub const SET_GATEWAY_FAULTS: Route<GatewayKnobs, GatewayKnobs> =
    Route::new(Payment, Put, "/gateway/faults");
/// `GET /products`: a page of the catalog.
pub const LIST_PRODUCTS: Route<(), Page<ProductView>> = Route::new(Inventory, Get, "/products");
/// `GET /products/{id}`: one product and its stock.
pub const GET_PRODUCT: Route<(), ProductView> = Route::new(Inventory, Get, "/products/{id}");
/// `PUT /products/{id}/stock`: set a product's available stock.
pub const SET_STOCK: Route<SetStock, ProductView> =
    Route::new(Inventory, Put, "/products/{id}/stock");
/// `GET /reservations`: a page of stock reservations.
pub const LIST_RESERVATIONS: Route<(), Page<ReservationView>> =
    Route::new(Inventory, Get, "/reservations");
/// `GET /reservations/{order_id}`: an order's reservation.
pub const GET_RESERVATION: Route<(), ReservationView> =
    Route::new(Inventory, Get, "/reservations/{order_id}");
/// `GET /notifications`: a page of notifications sent.
pub const LIST_NOTIFICATIONS: Route<(), Page<NotificationView>> =
    Route::new(Notification, Get, "/notifications");
/// `GET /sagas`: a page of sagas.
pub const LIST_SAGAS: Route<(), Page<SagaView>> = Route::new(Saga, Get, "/sagas");
/// `GET /sagas/summary`: sagas counted by state.
pub const SAGA_SUMMARY: Route<(), SagaSummary> = Route::new(Saga, Get, "/sagas/summary");
/// `GET /sagas/{order_id}`: an order's saga with its steps.
pub const GET_SAGA: Route<(), SagaView> = Route::new(Saga, Get, "/sagas/{order_id}");
/// `POST /sagas/{order_id}/retry`: retry a stuck saga's step.
pub const RETRY_SAGA: Route<(), SagaAction> = Route::new(Saga, Post, "/sagas/{order_id}/retry");
/// `POST /sagas/{order_id}/cancel`: cancel a saga, with a reason.
pub const CANCEL_SAGA: Route<CancelSaga, SagaAction> =
    Route::new(Saga, Post, "/sagas/{order_id}/cancel");

/// Every route of the services' own APIs (the operational routes every service shares are
/// [`OPS`]).
pub const ALL: &[RouteSpec] = &[
    CREATE_ORDER.spec,
    LIST_ORDERS.spec,
    GET_ORDER.spec,
    CANCEL_ORDER.spec,
    LIST_SHIPMENTS.spec,
    GET_SHIPMENT.spec,
    GET_CARRIER_FAULTS.spec,
    SET_CARRIER_FAULTS.spec,
    LIST_PAYMENTS.spec,
    GET_PAYMENT.spec,
    GET_GATEWAY_FAULTS.spec,
    SET_GATEWAY_FAULTS.spec,
    LIST_PRODUCTS.spec,
    GET_PRODUCT.spec,
    SET_STOCK.spec,
    LIST_RESERVATIONS.spec,
    GET_RESERVATION.spec,
    LIST_NOTIFICATIONS.spec,
    LIST_SAGAS.spec,
    SAGA_SUMMARY.spec,
    GET_SAGA.spec,
    RETRY_SAGA.spec,
    CANCEL_SAGA.spec,
];

/// The operational `GET` routes every service serves besides its own: health, metrics, the
/// outbox's pending rows and the OpenAPI document.
pub const OPS: &[&str] = &[
    "/health/live",
    "/health/ready",
    "/metrics",
    "/outbox/pending",
    "/openapi.json",
];

/// A `GET` route every service serves, answering with `A`.
pub struct OpsRoute<A> {
    /// Its path.
    pub path: &'static str,
    answer: PhantomData<fn() -> A>,
}

impl<A> OpsRoute<A> {
    const fn new(path: &'static str) -> Self {
        Self {
            path,
            answer: PhantomData,
        }
    }

    /// The route as `service` serves it.
    pub fn of(&self, service: ServiceId) -> Route<(), A> {
        Route::new(service, Get, self.path)
    }
}

/// `GET /health/live`: the process answers.
pub const HEALTH_LIVE: OpsRoute<Liveness> = OpsRoute::new("/health/live");
/// `GET /health/ready`: the service's dependencies and outbox backlog (503 when not ready).
pub const HEALTH_READY: OpsRoute<Readiness> = OpsRoute::new("/health/ready");
/// `GET /outbox/pending`: the outbox rows not yet published (`key=` filters by message key).
pub const OUTBOX_PENDING: OpsRoute<Page<PendingRow>> = OpsRoute::new("/outbox/pending");

/// The routes `service` serves of its own.
pub fn of(service: ServiceId) -> impl Iterator<Item = &'static RouteSpec> {
    ALL.iter().filter(move |r| r.service == service)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_filled_in_order_and_encoded() {
        assert_eq!(
            GET_ORDER.path_with(&["0190-ab"]).as_deref(),
            Some("/orders/0190-ab")
        );
        assert_eq!(
            CANCEL_SAGA.path_with(&["a/b c"]).as_deref(),
            Some("/sagas/a%2Fb%20c/cancel")
        );
        assert_eq!(LIST_ORDERS.path_with(&[]).as_deref(), Some("/orders"));
        assert_eq!(GET_ORDER.path_with(&[]), None);
        assert_eq!(GET_ORDER.path_with(&["a", "b"]), None);
        assert_eq!(SET_STOCK.spec.parameters(), 1);
    }

    #[test]
    fn every_route_is_listed_once_and_every_service_but_none_has_routes() {
        let mut seen = std::collections::BTreeSet::new();
        for r in ALL {
            assert!(seen.insert((r.method, r.path)), "{r} twice");
            assert!(r.path.starts_with('/') && !OPS.contains(&r.path), "{r}");
        }
        for s in ServiceId::all() {
            assert!(of(s).next().is_some(), "{} serves no route", s.name());
        }
        for path in [HEALTH_LIVE.path, HEALTH_READY.path, OUTBOX_PENDING.path] {
            assert!(OPS.contains(&path), "{path} is not listed in OPS");
        }
    }
}
