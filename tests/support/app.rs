//! An in-process server on port 0 for one test, on either backend, with settings overridden
//! per test. The storage handles stay reachable so a test can look at the queue itself.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_request_reply::adapters::memory;
use async_request_reply::app::{self, RunningApp};
use async_request_reply::config::{Config, StorageConfig};
use async_request_reply::domain::ports::Stores;
use async_request_reply::domain::sample::SampleWork;
use async_request_reply::domain::work::Work;

use super::azurite::{Azurite, Names};
use super::eventually;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    /// Azurite with the account key (a connection string).
    Azurite,
    /// OAuth Azurite over HTTPS, reached by managed identity: no key in the handler's settings.
    AzuriteIdentity,
}

impl Backend {
    pub fn is_azurite(self) -> bool {
        self != Backend::Memory
    }

    /// The Azurite this backend uses (the run's shared one of its kind), if any.
    pub fn azurite(self) -> Option<Azurite> {
        match self {
            Backend::Memory => None,
            Backend::Azurite => Some(Azurite::shared()),
            Backend::AzuriteIdentity => Some(Azurite::shared_identity()),
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// The app's stores (the request side's handles), for a test to look at directly.
    pub storage: Stores,
    pub app: Option<RunningApp>,
    /// The run's shared Azurite (or this test's own), held for the test (Azurite backend only).
    pub azurite: Option<Azurite>,
    /// This test's queue and containers on that Azurite (Azurite backend only).
    pub names: Option<Names>,
}

/// A client that does not follow redirects (tests look at each 302 themselves).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a reqwest client")
}

impl TestApp {
    /// Starts standalone (with the in-process worker) unless `settings` set
    /// `FUNCTIONS_CUSTOMHANDLER_PORT`, in which case it runs as under the host.
    pub async fn start(backend: Backend, settings: &[(&str, &str)]) -> TestApp {
        let mut vars: HashMap<String, String> = HashMap::new();
        vars.insert("PORT".into(), "0".into());
        let (azurite, names) = match backend.azurite() {
            None => {
                // Host-mode tests on the memory backend play the host's deliveries themselves;
                // the handler refuses memory under the host unless asked by name.
                vars.insert("ALLOW_IN_MEMORY_STORAGE".into(), "true".into());
                (None, None)
            }
            Some(a) => {
                let names = Names::unique();
                for (k, v) in a.handler_settings(&names) {
                    vars.insert(k.into(), v);
                }
                (Some(a), Some(names))
            }
        };
        for (k, v) in settings {
            vars.insert(k.to_string(), v.to_string());
        }
        let config = Config::from_vars(&vars).expect("test settings are valid");
        let storage = match &config.storage {
            StorageConfig::Memory => memory::storage(),
            azure => app::connect(azure).await.expect("Azurite is reachable"),
        };
        let work: Arc<dyn Work> = Arc::new(SampleWork {
            delay: config.processing_delay,
        });
        let app = app::start_with(config, storage.clone(), work)
            .await
            .expect("the app starts");
        TestApp {
            base: format!("http://{}", app.addr),
            // On OAuth Azurite a result link is https under the test CA.
            client: azurite.as_ref().map_or_else(client, Azurite::http),
            storage: storage.requests,
            app: Some(app),
            azurite,
            names,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a JSON record to the submit route.
    pub async fn submit(&self, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(self.url("/api/AsyncProcessingWorkAcceptor"))
            .json(body)
            .send()
            .await
            .expect("submit request")
    }

    /// Polls `url` (bounded) until its answer is no longer `202`, and returns that answer.
    pub async fn poll_until_done(&self, url: &str) -> reqwest::Response {
        eventually(
            format_args!("{url} ending"),
            Duration::from_millis(20),
            Duration::from_secs(30),
            async || {
                let r = self.client.get(url).send().await.expect("status request");
                (r.status() != reqwest::StatusCode::ACCEPTED).then_some(r)
            },
        )
        .await
    }

    pub async fn stop(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }
}

/// A record in the sample's shape.
pub fn record(id: &str) -> serde_json::Value {
    serde_json::json!({ "id": id, "customername": "Contoso" })
}
