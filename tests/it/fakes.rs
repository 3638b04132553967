//! Local stand-ins for the external services, answering as the contracts (and the shared
//! fixtures) say Meta does.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use poem::http::StatusCode;
use poem::listener::TcpAcceptor;
use poem::web::{Data, Json, Path};
use poem::{EndpointExt, IntoResponse, Request, Response, Route, Server, get, handler, post};
use serde_json::Value;

const SEND_OK: &str = include_str!("../fixtures/whatsapp/whatsapp_send_text_response.json");
const WINDOW_CLOSED: &str = include_str!("../fixtures/whatsapp/whatsapp_error_131047.json");
const MEDIA_URL: &str = include_str!("../fixtures/whatsapp/whatsapp_media_url_response.json");
const MEDIA_FIXTURE_URL: &str = "https://lookaside.fbsbx.com/whatsapp_business/attachments/?mid=1377452069183025&ext=1768489812&hash=ATsF0q7KxQeY2mBv9dLp4w";
const TRANSCRIPTION: &str = include_str!("../fixtures/openai/openai_transcription.json");
const RATE_LIMITED: &str = include_str!("../fixtures/openai/openai_error_429.json");
/// The token the fake Graph API expects, as the fixtures' README says.
const GRAPH_TOKEN: &str = "Bearer EAATESTclinicaFAKE0000";
/// The bytes of the voice note the fake serves (an Ogg page header and nothing else).
pub const VOICE_NOTE: &[u8] = b"OggS\0\x02fake-voice-note";
/// The wamid of the send fixture, replaced by a fresh one per accepted message.
const FIXTURE_WAMID: &str = "wamid.HBgNNTUxMTk3NjU0MzIxMBUCABEYEjhDNEUyMEE3RjlCMzFENTQ2QgA=";

/// How the fake answers the next send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200 with a new wamid.
    Accept,
    /// 400, code 131047: the 24-hour window has closed (the synchronous form).
    WindowClosed,
    /// 429, code 130429, `Retry-After: 1`.
    RateLimited,
    /// 500, code 131000.
    ServerError,
}

/// A message the fake was asked to send.
#[derive(Debug, Clone)]
pub struct Captured {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
    /// The wamid it was given, if accepted.
    pub wamid: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    base: String,
    sent: Vec<Captured>,
    script: VecDeque<Answer>,
    /// Media downloads served (the second step of Meta's two).
    downloads: usize,
    /// Media URLs handed out (the first step).
    media_urls: usize,
}

/// The Graph API's send endpoint, on a free local port.
#[derive(Debug)]
pub struct FakeGraph {
    pub base: String,
    state: Arc<Mutex<State>>,
}

impl FakeGraph {
    pub async fn start() -> FakeGraph {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(State {
            base: base.clone(),
            ..State::default()
        }));
        let app = Route::new()
            .at("/:version/:number/messages", post(send))
            .at("/:version/:media", get(media_url))
            .at("/media/:media", get(media_bytes))
            .data(state.clone());
        let acceptor = TcpAcceptor::from_std(listener).unwrap();
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        FakeGraph { base, state }
    }

    /// Answers the next sends with `answers`, in order, then accepts again.
    pub fn script(&self, answers: &[Answer]) {
        self.state.lock().unwrap().script.extend(answers);
    }

    /// Every send received so far, accepted or not.
    pub fn sent(&self) -> Vec<Captured> {
        self.state.lock().unwrap().sent.clone()
    }

    /// How many media files were downloaded.
    pub fn downloads(&self) -> usize {
        self.state.lock().unwrap().downloads
    }

    /// How many media URLs were asked for.
    pub fn media_urls(&self) -> usize {
        self.state.lock().unwrap().media_urls
    }
}

/// Step one of a media download: a short-lived URL, for the clinic's token only.
#[handler]
fn media_url(
    request: &Request,
    Path((_version, media)): Path<(String, String)>,
    state: Data<&Arc<Mutex<State>>>,
) -> Response {
    if request.header("authorization") != Some(GRAPH_TOKEN) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let base = {
        let mut state = state.lock().unwrap();
        state.media_urls += 1;
        state.base.clone()
    };
    // Each URL names the step it was made at: the first has expired (Meta's last only 5
    // minutes), so the client has to ask again.
    let media = format!("{media}-{}", state.lock().unwrap().media_urls);
    MEDIA_URL
        .replace(MEDIA_FIXTURE_URL, &format!("{base}/media/{media}"))
        .with_content_type("application/json")
        .into_response()
}

/// Step two: the bytes, with the same token ("if the token is omitted the request fails").
#[handler]
fn media_bytes(request: &Request, state: Data<&Arc<Mutex<State>>>) -> Response {
    if request.header("authorization") != Some(GRAPH_TOKEN) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if request.uri().path().ends_with("-1") {
        return StatusCode::NOT_FOUND.into_response();
    }
    state.lock().unwrap().downloads += 1;
    VOICE_NOTE
        .to_vec()
        .with_content_type("audio/ogg")
        .into_response()
}

/// OpenAI's chat completions and transcriptions, answering from a script.
#[derive(Debug)]
pub struct FakeOpenAi {
    pub base: String,
    state: Arc<Mutex<AiState>>,
}

#[derive(Debug, Default)]
struct AiState {
    /// Chat answers, in order (after them: a plain "Certo!").
    script: VecDeque<Value>,
    /// 429s to answer first, each with `retry-after-ms: 10`.
    rate_limits: usize,
    /// Every request body received (chat JSON, or the transcription's form as text).
    requests: Vec<String>,
    transcriptions: usize,
}

impl FakeOpenAi {
    pub async fn start() -> FakeOpenAi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        listener.set_nonblocking(true).unwrap();
        let state = Arc::new(Mutex::new(AiState::default()));
        let app = Route::new()
            .at("/chat/completions", post(chat))
            .at("/audio/transcriptions", post(transcribe))
            .data(state.clone());
        let acceptor = TcpAcceptor::from_std(listener).unwrap();
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        FakeOpenAi { base, state }
    }

    /// The model calls `tool` with `arguments` next.
    pub fn calls(&self, tool: &str, arguments: Value) {
        let answer = serde_json::json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": null,
                "tool_calls": [{"id": format!("call_{tool}"), "type": "function",
                                "function": {"name": tool, "arguments": arguments.to_string()}}]
            }}]
        });
        self.state.lock().unwrap().script.push_back(answer);
    }

    /// The model answers `text` next.
    pub fn says(&self, text: &str) {
        let answer = serde_json::json!({
            "id": "chatcmpl-fake", "object": "chat.completion", "model": "gpt-4o-mini",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": text}}]
        });
        self.state.lock().unwrap().script.push_back(answer);
    }

    /// The next `n` requests get a 429 (retryable).
    pub fn rate_limit(&self, n: usize) {
        self.state.lock().unwrap().rate_limits = n;
    }

    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn transcriptions(&self) -> usize {
        self.state.lock().unwrap().transcriptions
    }
}

fn limited(state: &mut AiState) -> Option<Response> {
    if state.rate_limits == 0 {
        return None;
    }
    state.rate_limits -= 1;
    let mut response = (StatusCode::TOO_MANY_REQUESTS, RATE_LIMITED)
        .with_content_type("application/json")
        .into_response();
    response
        .headers_mut()
        .insert("retry-after-ms", poem::http::HeaderValue::from_static("10"));
    Some(response)
}

#[handler]
fn chat(body: String, state: Data<&Arc<Mutex<AiState>>>) -> Response {
    let mut state = state.lock().unwrap();
    state.requests.push(body);
    if let Some(response) = limited(&mut state) {
        return response;
    }
    let answer = state.script.pop_front().unwrap_or_else(|| {
        serde_json::json!({"choices": [{"index": 0, "finish_reason": "stop",
                            "message": {"role": "assistant", "content": "Certo!"}}]})
    });
    Json(answer).into_response()
}

#[handler]
fn transcribe(body: Vec<u8>, state: Data<&Arc<Mutex<AiState>>>) -> Response {
    let mut state = state.lock().unwrap();
    let form = String::from_utf8_lossy(&body).into_owned();
    // The contract: the file and the model are required.
    if !form.contains("name=\"file\"") || !form.contains("name=\"model\"") {
        return (StatusCode::BAD_REQUEST, "file and model are required").into_response();
    }
    state.requests.push(form);
    state.transcriptions += 1;
    TRANSCRIPTION
        .with_content_type("application/json")
        .into_response()
}

#[handler]
fn send(
    request: &Request,
    Path((_version, _number)): Path<(String, String)>,
    Json(body): Json<Value>,
    state: Data<&Arc<Mutex<State>>>,
) -> Response {
    let mut state = state.lock().unwrap();
    let answer = state.script.pop_front().unwrap_or(Answer::Accept);
    let authorization = request.header("authorization").map(str::to_owned);
    let mut captured = Captured {
        path: request.uri().path().to_owned(),
        authorization,
        body,
        wamid: None,
    };
    let error = |status: StatusCode, code: i64, message: &str| {
        let body = format!(
            "{{\"error\":{{\"message\":\"(#{code}) {message}\",\"type\":\"OAuthException\",\
             \"code\":{code},\"fbtrace_id\":\"Afake\"}}}}"
        );
        (status, body).into_response()
    };
    let response = match answer {
        Answer::Accept => {
            let wamid = format!("wamid.fake-{}", state.sent.len() + 1);
            captured.wamid = Some(wamid.clone());
            SEND_OK
                .replace(FIXTURE_WAMID, &wamid)
                .with_content_type("application/json")
                .into_response()
        }
        Answer::WindowClosed => (StatusCode::BAD_REQUEST, WINDOW_CLOSED)
            .with_content_type("application/json")
            .into_response(),
        Answer::RateLimited => {
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, 130429, "Rate limit hit");
            response
                .headers_mut()
                .insert("retry-after", poem::http::HeaderValue::from_static("1"));
            response
        }
        Answer::ServerError => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            131000,
            "Something went wrong",
        ),
    };
    state.sent.push(captured);
    response
}
