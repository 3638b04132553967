//! Local stand-ins for the external services, answering as the contracts (and the shared
//! fixtures) say Meta does.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use poem::http::StatusCode;
use poem::listener::TcpAcceptor;
use poem::web::{Data, Json, Path};
use poem::{EndpointExt, IntoResponse, Request, Response, Route, Server, handler, post};
use serde_json::Value;

const SEND_OK: &str = include_str!("../fixtures/whatsapp/whatsapp_send_text_response.json");
const WINDOW_CLOSED: &str = include_str!("../fixtures/whatsapp/whatsapp_error_131047.json");
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
    sent: Vec<Captured>,
    script: VecDeque<Answer>,
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
        let state = Arc::new(Mutex::new(State::default()));
        let app = Route::new()
            .at("/:version/:number/messages", post(send))
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
