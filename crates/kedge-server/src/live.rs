//! Live updates: the controller announces every change to its cache of Applications on a broadcast channel; browsers
//! follow it as server-sent events.
//!
//! Each event names the application that changed (`event: app`, `data: namespace/name`); when a slow client missed
//! some, it gets `data: *` (refresh everything). Streams end when the controller shuts down.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::AppState;
use crate::auth::UiCaller;

/// `namespace/name` of a changed application, or `*` for all.
pub type Change = Arc<str>;

/// Publishes a change (e.g. after the server patched an application, before the watch reports it).
pub fn publish(state: &AppState, key: &str) {
    let _ = state.inner.live.send(key.into());
}

/// A stream of changes for one subscriber, ending at shutdown.
pub fn subscribe(state: &AppState) -> impl Stream<Item = Change> + Send + use<> {
    let rx = state.inner.live.subscribe();
    let shutdown = state.handles().shutdown.clone();
    BroadcastStream::new(rx)
        .map(|r| match r {
            Ok(k) => k,
            Err(BroadcastStreamRecvError::Lagged(_)) => Arc::from("*"),
        })
        .take_until(async move { shutdown.cancelled_owned().await })
}

/// `GET /ui/events`: the server-sent event stream of the UI.
pub async fn sse(
    State(state): State<AppState>,
    UiCaller(caller): UiCaller,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let hello = futures::stream::once(async { Ok(Event::default().event("hello").data("ready")) });
    // Only the applications the caller may see (checked at each change: a project's roles may have changed).
    let changes = subscribe(&state)
        .filter(move |k| std::future::ready(crate::access::sees_key(&state, &caller, k)))
        .map(|k| Ok(Event::default().event("app").data(k.as_ref())));
    Sse::new(hello.chain(changes)).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
