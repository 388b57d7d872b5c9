//! What the official Rust driver believes about the set, from its SDAM events, so a test
//! can wait for the driver to notice a transition before acting on it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mongodb::event::sdam::{SdamEvent, TopologyDescription};
use mongodb::event::EventHandler;
use mongodb::options::ClientOptions;
use mongodb::{Client, ServerType};

/// The driver's latest topology description.
#[derive(Clone, Default)]
pub struct DriverView {
    /// Written by the driver's event callback, read by the test.
    latest: Arc<Mutex<Option<TopologyDescription>>>,
}

impl DriverView {
    /// A handler for `ClientOptions::sdam_event_handler` that feeds this view.
    pub fn handler(&self) -> EventHandler<SdamEvent> {
        let latest = Arc::clone(&self.latest);
        EventHandler::callback(move |event: SdamEvent| {
            if let SdamEvent::TopologyDescriptionChanged(e) = event {
                *latest.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.new_description.clone());
            }
        })
    }

    /// Every server the driver knows, as `("host:port", type)`.
    pub fn servers(&self) -> Vec<(String, ServerType)> {
        let guard = self.latest.lock().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().map_or_else(Vec::new, |topology| {
            topology
                .servers()
                .iter()
                .map(|(addr, info)| (addr.to_string(), info.server_type()))
                .collect()
        })
    }

    /// The type the driver gives `host` (see [`super::ReplSet::host`]).
    pub fn server_type(&self, host: &str) -> Option<ServerType> {
        self.servers()
            .into_iter()
            .find(|(h, _)| h == host)
            .map(|(_, t)| t)
    }
}

/// A driver client for `uri` with quick monitoring (500 ms heartbeats, 10 s server
/// selection), reporting into a fresh [`DriverView`].
pub async fn client(uri: &str) -> (Client, DriverView) {
    let view = DriverView::default();
    let mut options = ClientOptions::parse(uri)
        .await
        .unwrap_or_else(|e| panic!("cannot parse {uri}: {e}"));
    options.heartbeat_freq = Some(Duration::from_millis(500));
    options.server_selection_timeout = Some(Duration::from_secs(10));
    options.sdam_event_handler = Some(view.handler());
    let client = Client::with_options(options).unwrap_or_else(|e| panic!("client for {uri}: {e}"));
    (client, view)
}
