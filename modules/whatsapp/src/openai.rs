//! OpenAI: speech to text (`/audio/transcriptions`) and chat completions with tools.
//!
//! Retries follow the two kinds of 429: a rate limit (`rate_limit_exceeded`) is retried
//! after the delay the answer names (`retry-after-ms`, else `retry-after`), capped; an
//! exhausted quota (`insufficient_quota`) is final, like a bad key.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

/// Why OpenAI gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AiError {
    #[error("OpenAI's rate limit held after retrying")]
    RateLimited,
    #[error("the OpenAI quota is exhausted")]
    QuotaExhausted,
    #[error("OpenAI refused the API key")]
    Unauthorized,
    #[error("OpenAI answered {status}: {code}")]
    Refused { status: u16, code: String },
    #[error("OpenAI could not be reached: {0}")]
    Transport(String),
}

#[derive(Debug, Clone)]
pub struct OpenAi {
    http: reqwest::Client,
    base: String,
    key: SecretString,
    pub chat_model: String,
    pub transcription_model: String,
}

#[derive(Deserialize)]
struct ErrorEnvelope {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    code: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct Transcription {
    text: String,
}

/// Tries before a rate limit is given up on.
const ATTEMPTS: u32 = 4;
/// The longest wait honoured: a patient is waiting for the answer.
const MAX_WAIT: Duration = Duration::from_secs(5);

impl OpenAi {
    pub fn new(
        http: reqwest::Client,
        base: &str,
        key: SecretString,
        chat_model: &str,
        transcription_model: &str,
    ) -> Self {
        OpenAi {
            http,
            base: base.trim_end_matches('/').to_owned(),
            key,
            chat_model: chat_model.to_owned(),
            transcription_model: transcription_model.to_owned(),
        }
    }

    /// The text of a voice note (`audio/ogg; codecs=opus` goes as is, named `voice.ogg`).
    pub async fn transcribe(&self, audio: Vec<u8>, mime: &str) -> Result<String, AiError> {
        let base_mime = mime
            .split(';')
            .next()
            .unwrap_or("audio/ogg")
            .trim()
            .to_owned();
        let extension = match base_mime.as_str() {
            "audio/mpeg" | "audio/mp3" => "mp3",
            "audio/mp4" | "audio/m4a" | "audio/aac" => "m4a",
            "audio/wav" | "audio/x-wav" => "wav",
            "audio/webm" => "webm",
            _ => "ogg",
        };
        let answer = self
            .with_retries(|| {
                let part = reqwest::multipart::Part::bytes(audio.clone())
                    .file_name(format!("voice.{extension}"))
                    .mime_str(&base_mime)
                    .unwrap_or_else(|_| reqwest::multipart::Part::bytes(audio.clone()));
                let form = reqwest::multipart::Form::new()
                    .part("file", part)
                    .text("model", self.transcription_model.clone())
                    .text("language", "pt")
                    .text("response_format", "json");
                self.http
                    .post(format!("{}/audio/transcriptions", self.base))
                    .bearer_auth(self.key.expose_secret())
                    .multipart(form)
            })
            .await?;
        let transcription: Transcription = serde_json::from_slice(&answer)
            .map_err(|e| AiError::Transport(format!("unreadable transcription: {e}")))?;
        Ok(transcription.text)
    }

    /// One chat completion: `request` is the JSON body without the model.
    pub async fn chat(&self, mut request: Value) -> Result<Value, AiError> {
        request["model"] = Value::String(self.chat_model.clone());
        let answer = self
            .with_retries(|| {
                self.http
                    .post(format!("{}/chat/completions", self.base))
                    .bearer_auth(self.key.expose_secret())
                    .json(&request)
            })
            .await?;
        serde_json::from_slice(&answer)
            .map_err(|e| AiError::Transport(format!("unreadable completion: {e}")))
    }

    async fn with_retries(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<Vec<u8>, AiError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let response = build().send().await;
            let response = match response {
                Ok(r) => r,
                Err(e) if attempt < ATTEMPTS && (e.is_connect() || e.is_timeout()) => {
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(AiError::Transport(describe(&e))),
            };
            let status = response.status();
            let wait = server_delay(response.headers());
            let should_retry = response
                .headers()
                .get("x-should-retry")
                .and_then(|v| v.to_str().ok())
                .map(|v| v == "true");
            let bytes = response
                .bytes()
                .await
                .map_err(|e| AiError::Transport(describe(&e)))?;
            if status.is_success() {
                return Ok(bytes.to_vec());
            }
            let error: Option<ErrorEnvelope> = serde_json::from_slice(&bytes).ok();
            let code = error
                .as_ref()
                .and_then(|e| e.error.code.clone().or_else(|| e.error.kind.clone()))
                .unwrap_or_default();
            match status.as_u16() {
                401 => return Err(AiError::Unauthorized),
                429 if code == "insufficient_quota" => return Err(AiError::QuotaExhausted),
                429 | 408 | 409 | 500.. if should_retry != Some(false) && attempt < ATTEMPTS => {
                    let delay = wait.unwrap_or_else(|| backoff(attempt)).min(MAX_WAIT);
                    tokio::time::sleep(delay).await;
                }
                429 => return Err(AiError::RateLimited),
                other => {
                    return Err(AiError::Refused {
                        status: other,
                        code,
                    });
                }
            }
        }
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 * 2u64.pow(attempt.saturating_sub(1).min(4)))
}

/// `retry-after-ms`, else `retry-after` in seconds.
fn server_delay(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let read = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    read("retry-after-ms")
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| read("retry-after").map(Duration::from_secs_f64))
}

fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "could not connect".into()
    } else {
        "the request failed".into()
    }
}
