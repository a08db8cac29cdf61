//! A watcher like kube-runtime's ([`kube::runtime::watcher`], list then watch, the same events,
//! errors and recovery), whose watch requests ask for protobuf ([`super::protobuf`] says why).
//! Lists stay JSON, through kube's `Api`: they are rare (start, relists) and paginated.

use std::collections::VecDeque;
use std::pin::Pin;
use std::time::Duration;

use futures::io::{AsyncBufRead, AsyncReadExt};
use futures::{Stream, stream};
use kube::api::{Api, ListParams, VersionMatch, WatchParams};
use kube::core::WatchEvent;
use kube::runtime::watcher::{self, Event, ListSemantic};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tracing::debug;

use super::protobuf::{self, FromProtobuf, MAX_FRAME, WATCH_MEDIA_TYPE};

/// The server ends a watch after `timeoutSeconds` (290 by default, as kube-runtime); a stream
/// silent for this much longer is taken as dead and restarted.
const IDLE_MARGIN: Duration = Duration::from_secs(5);
const DEFAULT_TIMEOUT: u32 = 290;

type Frames = Pin<Box<dyn AsyncBufRead + Send>>;

enum State<K> {
    Empty,
    InitPage {
        continue_token: Option<String>,
        objects: VecDeque<K>,
        last_version: Option<String>,
    },
    InitListed {
        resource_version: String,
    },
    Watching {
        resource_version: String,
        frames: Frames,
    },
}

/// Every object of kind `K` that `config` selects, as kube-runtime's `watcher` yields them: a
/// (re)list as `Init`, `InitApply`..., `InitDone`; then `Apply` and `Delete`. An error is
/// yielded once and the stream recovers on the next poll (relisting after 410 Gone), so a
/// backoff in front of it works as it does for kube-runtime's.
pub fn watcher<K>(
    client: Client,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send + 'static
where
    K: FromProtobuf<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let api = Api::<K>::all(client.clone());
    stream::unfold(State::Empty, move |state| {
        let (client, api, config) = (client.clone(), api.clone(), config.clone());
        async move {
            let (event, state) = step(&client, &api, &config, state).await;
            Some((event, state))
        }
    })
}

/// Steps until there is something to yield.
async fn step<K>(
    client: &Client,
    api: &Api<K>,
    config: &watcher::Config,
    mut state: State<K>,
) -> (watcher::Result<Event<K>>, State<K>)
where
    K: FromProtobuf<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    loop {
        match step_once(client, api, config, state).await {
            (Some(event), next) => return (event, next),
            (None, next) => state = next,
        }
    }
}

async fn step_once<K>(
    client: &Client,
    api: &Api<K>,
    config: &watcher::Config,
    state: State<K>,
) -> (Option<watcher::Result<Event<K>>>, State<K>)
where
    K: FromProtobuf<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    match state {
        State::Empty => (
            Some(Ok(Event::Init)),
            State::InitPage {
                continue_token: None,
                objects: VecDeque::new(),
                last_version: None,
            },
        ),
        State::InitPage {
            continue_token,
            mut objects,
            last_version,
        } => {
            if let Some(next) = objects.pop_front() {
                let state = State::InitPage {
                    continue_token,
                    objects,
                    last_version,
                };
                return (Some(Ok(Event::InitApply(next))), state);
            }
            if continue_token.is_none()
                && let Some(resource_version) = last_version
            {
                return (
                    Some(Ok(Event::InitDone)),
                    State::InitListed { resource_version },
                );
            }
            let mut params = list_params(config);
            params.continue_token = continue_token;
            match api.list(&params).await {
                Ok(list) => {
                    let last_version = list.metadata.resource_version.filter(|v| !v.is_empty());
                    let continue_token = list.metadata.continue_.filter(|t| !t.is_empty());
                    if last_version.is_none() && continue_token.is_none() {
                        return (Some(Err(watcher::Error::NoResourceVersion)), State::Empty);
                    }
                    let objects = list.items.into();
                    let state = State::InitPage {
                        continue_token,
                        objects,
                        last_version,
                    };
                    (None, state)
                }
                Err(e) => (
                    Some(Err(watcher::Error::InitialListFailed(e))),
                    State::Empty,
                ),
            }
        }
        State::InitListed { resource_version } => {
            match start_watch::<K>(client, config, &resource_version).await {
                Ok(frames) => (
                    None,
                    State::Watching {
                        resource_version,
                        frames,
                    },
                ),
                Err(e) => (
                    Some(Err(watcher::Error::WatchStartFailed(e))),
                    State::InitListed { resource_version },
                ),
            }
        }
        State::Watching {
            resource_version,
            mut frames,
        } => match next_event::<K>(&mut frames, config).await {
            None => (None, State::InitListed { resource_version }),
            Some(Err(e)) => (
                // A broken stream cannot be read on: resume from the last version seen.
                Some(Err(watcher::Error::WatchFailed(e))),
                State::InitListed { resource_version },
            ),
            Some(Ok(event)) => on_event(event, resource_version, frames),
        },
    }
}

/// What one watch event yields, and the state after it.
fn on_event<K: Resource>(
    event: WatchEvent<K>,
    resource_version: String,
    frames: Frames,
) -> (Option<watcher::Result<Event<K>>>, State<K>) {
    let watching = |resource_version| State::Watching {
        resource_version,
        frames,
    };
    match event {
        WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o)
            if o.resource_version().is_none_or(|v| v.is_empty()) =>
        {
            (Some(Err(watcher::Error::NoResourceVersion)), State::Empty)
        }
        WatchEvent::Added(o) | WatchEvent::Modified(o) => {
            let version = o.resource_version().unwrap_or_default();
            (Some(Ok(Event::Apply(o))), watching(version))
        }
        WatchEvent::Deleted(o) => {
            let version = o.resource_version().unwrap_or_default();
            (Some(Ok(Event::Delete(o))), watching(version))
        }
        WatchEvent::Bookmark(b) => (None, watching(b.metadata.resource_version)),
        // 410 Gone: the version is compacted away; start over with a list.
        WatchEvent::Error(e) if e.code == 410 => {
            (Some(Err(watcher::Error::WatchError(e))), State::Empty)
        }
        WatchEvent::Error(e) => (
            Some(Err(watcher::Error::WatchError(e))),
            watching(resource_version),
        ),
    }
}

fn list_params(config: &watcher::Config) -> ListParams {
    let (resource_version, version_match) = match config.list_semantic {
        ListSemantic::Any => (Some("0".to_string()), Some(VersionMatch::NotOlderThan)),
        ListSemantic::MostRecent => (None, None),
    };
    ListParams {
        label_selector: config.label_selector.clone(),
        field_selector: config.field_selector.clone(),
        resource_version,
        version_match,
        limit: config.page_size,
        ..Default::default()
    }
}

async fn start_watch<K: Resource<DynamicType = ()>>(
    client: &Client,
    config: &watcher::Config,
    resource_version: &str,
) -> kube::Result<Frames> {
    let params = WatchParams {
        label_selector: config.label_selector.clone(),
        field_selector: config.field_selector.clone(),
        timeout: Some(config.timeout.unwrap_or(DEFAULT_TIMEOUT)),
        bookmarks: config.bookmarks,
        send_initial_events: false,
    };
    let mut request = kube::core::Request::new(K::url_path(&(), None))
        .watch(&params, resource_version)
        .map_err(kube::Error::BuildRequest)?;
    let headers = request.headers_mut();
    headers.insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static(WATCH_MEDIA_TYPE),
    );
    // Kubernetes 1.37 gzips watch streams when asked; the frames are small and already compact.
    headers.insert(
        http::header::ACCEPT_ENCODING,
        http::HeaderValue::from_static("identity"),
    );
    Ok(Box::pin(client.request_stream(request).await?))
}

/// The next event of the stream; `None` when the server ended it (its timeout) or it went silent.
async fn next_event<K: FromProtobuf>(
    frames: &mut Frames,
    config: &watcher::Config,
) -> Option<kube::Result<WatchEvent<K>>> {
    let idle = Duration::from_secs(config.timeout.unwrap_or(DEFAULT_TIMEOUT).into()) + IDLE_MARGIN;
    let frame = match tokio::time::timeout(idle, next_frame(frames)).await {
        Err(_) => {
            debug!("protobuf watch idle past its timeout; restarting it");
            return None;
        }
        Ok(Ok(None)) => return None,
        Ok(Ok(Some(frame))) => frame,
        Ok(Err(e)) => return Some(Err(kube::Error::ReadEvents(e))),
    };
    Some(protobuf::decode_event(&frame).map_err(|e| {
        kube::Error::ReadEvents(std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }))
}

/// One length-delimited frame; `None` at the end of the stream (a watch ends between frames,
/// and an end within one is a connection that dropped: resumed alike).
async fn next_frame(frames: &mut Frames) -> std::io::Result<Option<Vec<u8>>> {
    let mut length = [0u8; 4];
    match frames.read_exact(&mut length).await {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        other => other?,
    }
    let length = u32::from_be_bytes(length) as usize;
    if length > MAX_FRAME {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("a watch frame of {length} bytes"),
        ));
    }
    let mut frame = vec![0; length];
    match frames.read_exact(&mut frame).await {
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
        Ok(()) => Ok(Some(frame)),
    }
}
