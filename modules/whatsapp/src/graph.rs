//! The WhatsApp Cloud API (Meta's Graph API): sending messages and downloading media.
//!
//! One call is one attempt; [`crate::sender`] decides about retries from
//! [`SendError::retryable`]. Errors are told apart by Meta's `code`, not by the HTTP
//! status or the title, as the error contract asks.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};

/// A clinic's number on the Cloud API.
#[derive(Clone)]
pub struct Account {
    pub phone_number_id: String,
    pub token: SecretString,
}

impl Account {
    /// The account of a local stand-in transport, which sends nowhere.
    pub fn local() -> Self {
        Account {
            phone_number_id: "0".into(),
            token: SecretString::from("local".to_owned()),
        }
    }
}

impl std::fmt::Debug for Account {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Account")
            .field("phone_number_id", &self.phone_number_id)
            .finish_non_exhaustive()
    }
}

/// Who a message goes to: the WhatsApp id that wrote in (sent as `+<digits>`), or, for a
/// contact known only by their business-scoped user id, that id.
#[derive(Clone, PartialEq, Eq)]
pub enum Recipient {
    WaId(String),
    UserId(String),
}

impl std::fmt::Debug for Recipient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recipient(..)")
    }
}

/// A message to send. Stored sealed, as JSON, until it is sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Outgoing {
    Text {
        body: String,
    },
    /// Reply buttons: at most three, each `(id, title)` (title at most 20 characters).
    Buttons {
        body: String,
        buttons: Vec<(String, String)>,
    },
    /// An approved template, with named body parameters and quick-reply payloads.
    Template {
        name: String,
        language: String,
        parameters: Vec<(String, String)>,
        quick_replies: Vec<String>,
    },
}

impl Outgoing {
    pub fn text(body: impl Into<String>) -> Self {
        Outgoing::Text { body: body.into() }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Outgoing::Text { .. } => "text",
            Outgoing::Buttons { .. } => "interactive",
            Outgoing::Template { .. } => "template",
        }
    }

    /// The text a person reads, as stored (sealed) with the message.
    pub fn readable(&self) -> String {
        match self {
            Outgoing::Text { body } | Outgoing::Buttons { body, .. } => body.clone(),
            Outgoing::Template {
                name, parameters, ..
            } => {
                let values: Vec<&str> = parameters.iter().map(|(_, v)| v.as_str()).collect();
                format!("[{name}] {}", values.join(" · "))
            }
        }
    }

    /// The JSON body of `POST /{phone-number-id}/messages`.
    pub fn body(&self, to: &Recipient) -> Value {
        let mut body = json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "type": self.kind(),
        });
        match to {
            Recipient::WaId(id) => body["to"] = json!(format!("+{id}")),
            Recipient::UserId(id) => body["recipient"] = json!(id),
        }
        match self {
            Outgoing::Text { body: text } => {
                body["text"] = json!({"preview_url": false, "body": text});
            }
            Outgoing::Buttons {
                body: text,
                buttons,
            } => {
                let buttons: Vec<Value> = buttons
                    .iter()
                    .take(3)
                    .map(|(id, title)| {
                        let title: String = title.chars().take(20).collect();
                        json!({"type": "reply", "reply": {"id": id, "title": title}})
                    })
                    .collect();
                let text: String = text.chars().take(1024).collect();
                body["interactive"] = json!({
                    "type": "button",
                    "body": {"text": text},
                    "action": {"buttons": buttons},
                });
            }
            Outgoing::Template {
                name,
                language,
                parameters,
                quick_replies,
            } => {
                let mut components = Vec::new();
                if !parameters.is_empty() {
                    let parameters: Vec<Value> = parameters
                        .iter()
                        .map(|(name, text)| {
                            json!({"type": "text", "parameter_name": name, "text": text})
                        })
                        .collect();
                    components.push(json!({"type": "body", "parameters": parameters}));
                }
                for (index, payload) in quick_replies.iter().enumerate() {
                    components.push(json!({
                        "type": "button", "sub_type": "quick_reply", "index": index,
                        "parameters": [{"type": "payload", "payload": payload}],
                    }));
                }
                body["template"] = json!({
                    "name": name,
                    "language": {"code": language},
                    "components": components,
                });
            }
        }
        body
    }
}

/// What Meta answered to an accepted message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub wamid: String,
    /// The WhatsApp id Meta resolved the number to (it may differ from what was sent).
    pub wa_id: Option<String>,
}

/// Why a send did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Meta refused it, with its error code.
    #[error("Meta refused the message: code {code}{}", details.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        code: i64,
        details: Option<String>,
        /// How long Meta asked to wait (`Retry-After`), if it said.
        retry_after: Option<Duration>,
        status: u16,
    },
    /// Meta could not be reached or answered something unreadable.
    #[error("the Graph API could not be reached: {0}")]
    Transport(String),
}

/// Codes that mean "later", not "never".
const RETRYABLE_CODES: &[i64] = &[4, 80007, 130429, 131000, 131016, 131056, 133004, 2];

/// The 24-hour customer-service window has closed: only a template may be sent.
pub const WINDOW_CLOSED: i64 = 131047;

impl SendError {
    pub fn retryable(&self) -> bool {
        match self {
            SendError::Transport(_) => true,
            SendError::Refused { code, status, .. } => {
                *status == 429 || *status >= 500 || RETRYABLE_CODES.contains(code)
            }
        }
    }

    pub fn code(&self) -> Option<i64> {
        match self {
            SendError::Refused { code, .. } => Some(*code),
            SendError::Transport(_) => None,
        }
    }
}

/// Why media could not be had.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the media is gone or unknown")]
    NotFound,
    #[error("the media exceeds {0} bytes")]
    TooLarge(usize),
    #[error(transparent)]
    Send(#[from] SendError),
}

/// The largest media the assistant downloads (WhatsApp's own audio limit).
pub const MAX_MEDIA: usize = 16 * 1024 * 1024;

/// A client of the Graph API at `base` (`https://graph.facebook.com` in production).
#[derive(Debug, Clone)]
pub struct Graph {
    http: reqwest::Client,
    base: String,
    version: String,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: GraphError,
}

#[derive(Deserialize)]
struct GraphError {
    code: Option<i64>,
    error_data: Option<ErrorData>,
}

#[derive(Deserialize)]
struct ErrorData {
    details: Option<String>,
}

#[derive(Deserialize)]
struct SendResponse {
    #[serde(default)]
    contacts: Vec<SentContact>,
    #[serde(default)]
    messages: Vec<SentMessage>,
}

#[derive(Deserialize)]
struct SentContact {
    wa_id: Option<String>,
}

#[derive(Deserialize)]
struct SentMessage {
    id: String,
}

#[derive(Deserialize)]
struct MediaInfo {
    url: String,
}

impl Graph {
    pub fn new(http: reqwest::Client, base: &str, version: &str) -> Self {
        Graph {
            http,
            base: base.trim_end_matches('/').to_owned(),
            version: version.to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/{}/{path}", self.base, self.version)
    }

    /// Sends one message, once.
    pub async fn send(
        &self,
        account: &Account,
        to: &Recipient,
        message: &Outgoing,
    ) -> Result<Sent, SendError> {
        let response = self
            .http
            .post(self.url(&format!("{}/messages", account.phone_number_id)))
            .bearer_auth(account.token.expose_secret())
            .json(&message.body(to))
            .send()
            .await
            .map_err(|e| SendError::Transport(without_url(&e)))?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let bytes = response
            .bytes()
            .await
            .map_err(|e| SendError::Transport(without_url(&e)))?;
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &bytes, retry_after));
        }
        let sent: SendResponse = serde_json::from_slice(&bytes)
            .map_err(|e| SendError::Transport(format!("unreadable answer: {e}")))?;
        let wamid = sent
            .messages
            .into_iter()
            .next()
            .map(|m| m.id)
            .ok_or_else(|| SendError::Transport("the answer names no message".into()))?;
        Ok(Sent {
            wamid,
            wa_id: sent.contacts.into_iter().next().and_then(|c| c.wa_id),
        })
    }

    /// Downloads a media file in Meta's two steps: its short-lived URL, then the bytes with
    /// the same token. A URL that expired in between is asked for again, once.
    pub async fn media(&self, account: &Account, media_id: &str) -> Result<Vec<u8>, MediaError> {
        for _ in 0..2 {
            let info = self
                .http
                .get(self.url(media_id))
                .query(&[("phone_number_id", account.phone_number_id.as_str())])
                .bearer_auth(account.token.expose_secret())
                .send()
                .await
                .map_err(|e| SendError::Transport(without_url(&e)))?;
            let status = info.status();
            let bytes = info
                .bytes()
                .await
                .map_err(|e| SendError::Transport(without_url(&e)))?;
            if status == reqwest::StatusCode::NOT_FOUND {
                return Err(MediaError::NotFound);
            }
            if !status.is_success() {
                return Err(refusal(status.as_u16(), &bytes, None).into());
            }
            let info: MediaInfo = serde_json::from_slice(&bytes)
                .map_err(|e| SendError::Transport(format!("unreadable media answer: {e}")))?;
            let download = self
                .http
                .get(&info.url)
                .bearer_auth(account.token.expose_secret())
                .send()
                .await
                .map_err(|e| SendError::Transport(without_url(&e)))?;
            match download.status() {
                reqwest::StatusCode::NOT_FOUND => continue,
                s if !s.is_success() => {
                    return Err(SendError::Transport(format!("media download answered {s}")).into());
                }
                _ => {}
            }
            if download
                .content_length()
                .is_some_and(|n| n > MAX_MEDIA as u64)
            {
                return Err(MediaError::TooLarge(MAX_MEDIA));
            }
            let bytes = download
                .bytes()
                .await
                .map_err(|e| SendError::Transport(without_url(&e)))?;
            if bytes.len() > MAX_MEDIA {
                return Err(MediaError::TooLarge(MAX_MEDIA));
            }
            return Ok(bytes.to_vec());
        }
        Err(MediaError::NotFound)
    }
}

/// What went wrong with a request, without its URL (it may carry a patient's media id).
fn without_url(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "could not connect".into()
    } else if err.is_request() {
        "the request failed".into()
    } else {
        "the response could not be read".into()
    }
}

fn refusal(status: u16, body: &[u8], retry_after: Option<Duration>) -> SendError {
    let parsed: Option<ErrorEnvelope> = serde_json::from_slice(body).ok();
    let (code, details) = match parsed {
        Some(e) => (
            e.error.code.unwrap_or(0),
            e.error.error_data.and_then(|d| d.details),
        ),
        None => (0, None),
    };
    SendError::Refused {
        code,
        details,
        retry_after,
        status,
    }
}

/// `Retry-After` in seconds, if given.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_the_send_contract() {
        let to = Recipient::WaId("5511976543210".into());
        let text = Outgoing::text("Olá").body(&to);
        assert_eq!(
            text,
            json!({"messaging_product": "whatsapp", "recipient_type": "individual",
                   "to": "+5511976543210", "type": "text",
                   "text": {"preview_url": false, "body": "Olá"}})
        );
        let buttons = Outgoing::Buttons {
            body: "Confirma?".into(),
            buttons: vec![
                ("a:1".into(), "Confirmar".into()),
                (
                    "a:2".into(),
                    "Um título longo demais para o WhatsApp".into(),
                ),
                ("a:3".into(), "Cancelar".into()),
                ("a:4".into(), "Quarto".into()),
            ],
        }
        .body(&to);
        let sent = buttons["interactive"]["action"]["buttons"]
            .as_array()
            .unwrap();
        assert_eq!(sent.len(), 3, "at most three buttons");
        assert_eq!(
            sent[1]["reply"]["title"].as_str().unwrap().chars().count(),
            20
        );
        let template = Outgoing::Template {
            name: "lembrete_avaliacao".into(),
            language: "pt_BR".into(),
            parameters: vec![("nome".into(), "Mariana".into())],
            quick_replies: vec!["appt:1:confirm".into()],
        }
        .body(&Recipient::UserId("BR.1840375529163847".into()));
        assert_eq!(template["recipient"], "BR.1840375529163847");
        assert!(template.get("to").is_none());
        assert_eq!(template["template"]["language"]["code"], "pt_BR");
        assert_eq!(
            template["template"]["components"][0]["parameters"][0],
            json!({"type": "text", "parameter_name": "nome", "text": "Mariana"})
        );
        assert_eq!(
            template["template"]["components"][1]["sub_type"],
            "quick_reply"
        );
    }

    #[test]
    fn errors_are_told_apart_by_code() {
        let window = refusal(
            400,
            include_bytes!("../../../tests/fixtures/whatsapp/whatsapp_error_131047.json"),
            None,
        );
        assert_eq!(window.code(), Some(WINDOW_CLOSED));
        assert!(!window.retryable());
        let throttled = refusal(400, br#"{"error":{"code":130429}}"#, None);
        assert!(throttled.retryable());
        assert!(refusal(503, b"oops", None).retryable());
        assert!(!refusal(400, br#"{"error":{"code":131026}}"#, None).retryable());
    }
}
