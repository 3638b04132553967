//! The webhook notifications Meta sends (`field: "messages"`), read leniently: every id
//! and timestamp is a string, most parts are optional, and since the business-scoped user
//! ids of 2026 a contact may come without a phone (`from`, `wa_id`).

use chrono::{DateTime, Utc};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Notification {
    pub object: String,
    #[serde(default)]
    pub entry: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
pub struct Entry {
    #[serde(default)]
    pub changes: Vec<Change>,
}

#[derive(Debug, Deserialize)]
pub struct Change {
    #[serde(default)]
    pub field: String,
    pub value: Option<ChangeValue>,
}

#[derive(Debug, Deserialize)]
pub struct ChangeValue {
    pub metadata: Option<Metadata>,
    #[serde(default)]
    pub contacts: Vec<Contact>,
    #[serde(default)]
    pub messages: Vec<Message>,
    #[serde(default)]
    pub statuses: Vec<Status>,
}

#[derive(Debug, Deserialize)]
pub struct Metadata {
    pub phone_number_id: String,
}

#[derive(Debug, Deserialize)]
pub struct Contact {
    pub profile: Option<Profile>,
    pub wa_id: Option<String>,
    pub user_id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Profile {
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Message {
    pub from: Option<String>,
    pub from_user_id: Option<String>,
    pub id: String,
    pub timestamp: String,
    #[serde(rename = "type", default)]
    pub kind: String,
    pub text: Option<Text>,
    pub audio: Option<Media>,
    pub interactive: Option<Interactive>,
    pub button: Option<Button>,
    pub context: Option<Context>,
}

#[derive(Debug, Deserialize)]
pub struct Text {
    pub body: String,
}

#[derive(Debug, Deserialize)]
pub struct Media {
    pub id: String,
    pub mime_type: Option<String>,
    pub voice: Option<bool>,
}

#[derive(Debug, Deserialize)]
pub struct Interactive {
    pub button_reply: Option<Reply>,
    pub list_reply: Option<Reply>,
}

#[derive(Debug, Deserialize)]
pub struct Reply {
    pub id: String,
    pub title: Option<String>,
}

/// A quick-reply button of a template.
#[derive(Debug, Deserialize)]
pub struct Button {
    pub payload: Option<String>,
    pub text: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Context {
    pub id: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct Status {
    pub id: String,
    pub status: String,
    pub timestamp: String,
    #[serde(default)]
    pub errors: Vec<StatusError>,
}

#[derive(Debug, Deserialize)]
pub struct StatusError {
    pub code: Option<i64>,
    pub title: Option<String>,
    pub error_data: Option<ErrorData>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorData {
    pub details: Option<String>,
}

/// Meta's Unix-seconds timestamp; `now` if it is unreadable.
pub fn timestamp(text: &str) -> DateTime<Utc> {
    text.trim()
        .parse::<i64>()
        .ok()
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .unwrap_or_else(Utc::now)
}

/// What a contact sent, as the assistant reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    Text(String),
    /// A voice note (or another audio) to download and transcribe.
    Audio {
        media_id: String,
        mime: String,
    },
    /// A reply button or list item: its id and the title the contact saw.
    Choice {
        id: String,
        title: String,
    },
    /// Something the assistant does not read (image, sticker, location...).
    Other(String),
}

impl Message {
    pub fn content(&self) -> Content {
        if let Some(text) = &self.text {
            return Content::Text(text.body.clone());
        }
        if let Some(audio) = &self.audio {
            return Content::Audio {
                media_id: audio.id.clone(),
                mime: audio
                    .mime_type
                    .clone()
                    .unwrap_or_else(|| "audio/ogg".into()),
            };
        }
        if let Some(reply) = self
            .interactive
            .as_ref()
            .and_then(|i| i.button_reply.as_ref().or(i.list_reply.as_ref()))
        {
            return Content::Choice {
                id: reply.id.clone(),
                title: reply.title.clone().unwrap_or_default(),
            };
        }
        if let Some(button) = &self.button {
            return Content::Choice {
                id: button.payload.clone().unwrap_or_default(),
                title: button.text.clone().unwrap_or_default(),
            };
        }
        Content::Other(self.kind.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fixtures_read_as_their_kinds() {
        let read = |bytes: &[u8]| serde_json::from_slice::<Notification>(bytes).unwrap();
        let text = read(include_bytes!(
            "../../../tests/fixtures/whatsapp/whatsapp_text.json"
        ));
        let value = text.entry[0].changes[0].value.as_ref().unwrap();
        assert_eq!(
            value.metadata.as_ref().unwrap().phone_number_id,
            "118274650391827"
        );
        let message = &value.messages[0];
        assert_eq!(message.from.as_deref(), Some("5511976543210"));
        let Content::Text(body) = message.content() else {
            panic!("not a text")
        };
        assert!(body.starts_with("Olá! Vocês"), "{body}");
        assert_eq!(timestamp(&message.timestamp).timestamp(), 1_768_489_200);

        let audio = read(include_bytes!(
            "../../../tests/fixtures/whatsapp/whatsapp_audio.json"
        ));
        let value = audio.entry[0].changes[0].value.as_ref().unwrap();
        assert_eq!(value.contacts[0].wa_id.as_deref(), Some("558187652301"));
        assert!(
            matches!(value.messages[0].content(), Content::Audio { ref media_id, .. } if media_id == "1377452069183025")
        );

        let button = read(include_bytes!(
            "../../../tests/fixtures/whatsapp/whatsapp_button_reply.json"
        ));
        let value = button.entry[0].changes[0].value.as_ref().unwrap();
        assert_eq!(
            value.messages[0].content(),
            Content::Choice {
                id: "appt:apt_01JH8Q2N7Z:confirm".into(),
                title: "Confirmar".into()
            }
        );

        let failed = read(include_bytes!(
            "../../../tests/fixtures/whatsapp/whatsapp_status_failed_131047.json"
        ));
        let status = &failed.entry[0].changes[0].value.as_ref().unwrap().statuses[0];
        assert_eq!(status.status, "failed");
        assert_eq!(status.errors[0].code, Some(131_047));
    }
}
