//! The module's settings, `[modules.whatsapp]` in the configuration (secrets only from the
//! environment: `HARMONY__MODULES__WHATSAPP__APP_SECRET`, `..._VERIFY_TOKEN`,
//! `..._OPENAI_API_KEY`, or their `_FILE` variants).

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

/// Which understanding answers patients.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineChoice {
    /// OpenAI when an API key is configured, the built-in engine otherwise.
    #[default]
    Auto,
    Builtin,
    Openai,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WhatsappConfig {
    /// The Meta app secret: the key of `X-Hub-Signature-256`. Without it every webhook is
    /// refused.
    #[serde(default, deserialize_with = "secret")]
    pub app_secret: Option<SecretString>,
    /// The token Meta echoes in the verification handshake.
    #[serde(default, deserialize_with = "secret")]
    pub verify_token: Option<SecretString>,
    #[serde(default = "graph_url")]
    pub graph_url: String,
    #[serde(default = "graph_version")]
    pub graph_version: String,
    #[serde(default, deserialize_with = "secret")]
    pub openai_api_key: Option<SecretString>,
    #[serde(default = "openai_url")]
    pub openai_url: String,
    #[serde(default = "chat_model")]
    pub chat_model: String,
    #[serde(default = "transcription_model")]
    pub transcription_model: String,
    #[serde(default)]
    pub engine: EngineChoice,
    /// Longest any call to Meta or OpenAI may take.
    #[serde(default = "request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Sends of one message before it is given up as failed.
    #[serde(default = "max_send_attempts")]
    pub max_send_attempts: i32,
}

impl Default for WhatsappConfig {
    fn default() -> Self {
        WhatsappConfig {
            app_secret: None,
            verify_token: None,
            graph_url: graph_url(),
            graph_version: graph_version(),
            openai_api_key: None,
            openai_url: openai_url(),
            chat_model: chat_model(),
            transcription_model: transcription_model(),
            engine: EngineChoice::Auto,
            request_timeout_ms: request_timeout_ms(),
            max_send_attempts: max_send_attempts(),
        }
    }
}

fn graph_url() -> String {
    "https://graph.facebook.com".into()
}
fn graph_version() -> String {
    "v24.0".into()
}
fn openai_url() -> String {
    "https://api.openai.com/v1".into()
}
fn chat_model() -> String {
    "gpt-4o-mini".into()
}
fn transcription_model() -> String {
    "gpt-4o-mini-transcribe".into()
}
fn request_timeout_ms() -> u64 {
    10_000
}
fn max_send_attempts() -> i32 {
    6
}

/// A secret given as a string (or, from the environment, something that looked like a
/// number); empty means none.
fn secret<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
    let value = Option::<serde_json::Value>::deserialize(d)?;
    Ok(match value {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) if s.trim().is_empty() => None,
        Some(serde_json::Value::String(s)) => Some(SecretString::from(s)),
        Some(other) => Some(SecretString::from(other.to_string())),
    })
}
