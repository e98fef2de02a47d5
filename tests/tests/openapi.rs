//! The OpenAPI documents: each service serves at `GET /openapi.json` exactly what is checked in
//! under `contracts/openapi/NAME.json`, and every route, parameter, body and error is in it.
//!
//! After an intended API change: `OMS_BLESS_OPENAPI=1 cargo test -p oms-tests --test openapi`
//! rewrites the checked-in documents (review the diff).

use std::path::PathBuf;

use oms_contracts::routes;
use oms_tests::stack::{Service, Stack, StackOptions};
use serde_json::Value;

fn document(service: Service) -> anyhow::Result<Value> {
    let doc = match service {
        Service::Order => oms_order::openapi(),
        Service::Payment => oms_payment::openapi(),
        Service::Inventory => oms_inventory::openapi(),
        Service::Notification => oms_notification::openapi(),
        Service::Saga => oms_saga::openapi(),
        Service::Fulfillment => oms_fulfillment::openapi(),
    };
    Ok(serde_json::from_str(&doc.to_pretty_json()?)?)
}

fn checked_in(service: Service) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../contracts/openapi")
        .join(format!("{}.json", service.name()))
}

#[test]
fn the_checked_in_documents_are_the_generated_ones() -> anyhow::Result<()> {
    let bless = std::env::var_os("OMS_BLESS_OPENAPI").is_some();
    for service in Service::all() {
        let generated = document(service)?;
        let path = checked_in(service);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap_or(&path))?;
            std::fs::write(&path, serde_json::to_string_pretty(&generated)? + "\n")?;
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            anyhow::anyhow!(
                "{}: {e} (run with OMS_BLESS_OPENAPI=1 to write it)",
                path.display()
            )
        })?;
        let pinned: Value = serde_json::from_str(&text)?;
        assert!(
            pinned == generated,
            "{} differs from what {} generates: an API change needs OMS_BLESS_OPENAPI=1 and a reviewed diff",
            path.display(),
            service.name()
        );
    }
    Ok(())
}

#[test]
fn every_route_is_documented_with_its_errors_as_problem_details() -> anyhow::Result<()> {
    for service in Service::all() {
        let doc = document(service)?;
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in &paths {
            for (method, op) in item.as_object().into_iter().flatten() {
                documented.push((method.clone(), path.clone()));
                for (code, response) in op["responses"].as_object().into_iter().flatten() {
                    let content = &response["content"];
                    if code.starts_with('4') || code.starts_with('5') && code != "503" {
                        assert!(
                            content.get("application/problem+json").is_some(),
                            "{} {method} {path} {code}: not problem+json: {response}",
                            service.name()
                        );
                    }
                }
            }
        }
        // Every route the contracts define for the service, and the operational ones: a route
        // added without documenting it (or documented but not served) fails here and in the
        // served-document test.
        let mut expected: Vec<(String, String)> = routes::of(service)
            .map(|r| (r.method.as_str().to_lowercase(), r.path.to_owned()))
            .chain(
                routes::OPS
                    .iter()
                    .map(|p| ("get".to_owned(), (*p).to_owned())),
            )
            .collect();
        expected.sort();
        documented.sort();
        assert_eq!(documented, expected, "{}", service.name());
        // Every schema a response or body names is defined.
        let text = doc.to_string();
        for name in text.split("#/components/schemas/").skip(1) {
            let name: String = name.chars().take_while(|c| *c != '"').collect();
            assert!(
                doc["components"]["schemas"].get(&name).is_some(),
                "{}: schema {name} is referenced but not defined",
                service.name()
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_serves_the_checked_in_document() -> anyhow::Result<()> {
    let stack = Stack::start(StackOptions::default()).await?;
    for service in Service::all() {
        let served = stack.get(service, "/openapi.json").await?;
        let pinned: Value = serde_json::from_str(&std::fs::read_to_string(checked_in(service))?)?;
        assert!(
            served == pinned,
            "{} serves another document than {}",
            service.name(),
            checked_in(service).display()
        );
        // An undocumented route answers a problem, never HTML or plain text.
        let r = stack
            .http
            .get(format!("{}/no/such/route", stack.url(service)?))
            .send()
            .await?;
        assert_eq!(r.status(), 404);
        assert_eq!(
            r.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/problem+json")
        );
    }
    stack.shutdown().await
}
