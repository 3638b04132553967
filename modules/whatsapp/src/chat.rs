//! `harmony chat`: a conversation with a clinic's assistant in the terminal. What is typed
//! goes in as a WhatsApp message from the given phone would (stored, sealed, answered by
//! the assistant off the same queue); what the assistant sends is printed instead of going
//! to Meta. Buttons show numbered: typing the number (or the words) answers them.

use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text, Uuid as SqlUuid};
use diesel_async::RunQueryDsl;
use harmony_core::Kernel;
use harmony_core::db::TenantScope;
use harmony_core::error::Error;
use harmony_core::sql::sql;
use scoped_futures::ScopedFutureExt;
use serde_json::json;
use tokio::io::AsyncBufReadExt as _;
use uuid::Uuid;

use crate::graph::{Account, MediaError, Outgoing, Recipient, SendError, Sent};
use crate::{Transport, Whatsapp, assistant, webhook};

/// Prints what the assistant sends.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal;

#[async_trait::async_trait]
impl Transport for Terminal {
    async fn send(
        &self,
        _account: &Account,
        _to: &Recipient,
        message: &Outgoing,
    ) -> Result<Sent, SendError> {
        let mut out = std::io::stdout().lock();
        let _ = match message {
            Outgoing::Text { body } => writeln!(out, "\nassistente: {body}"),
            Outgoing::Buttons { body, buttons } => {
                let titles: Vec<String> = buttons
                    .iter()
                    .enumerate()
                    .map(|(i, (_, title))| format!("[{}] {title}", i + 1))
                    .collect();
                writeln!(
                    out,
                    "\nassistente: {body}\n            {}",
                    titles.join("  ")
                )
            }
            Outgoing::Template {
                name, parameters, ..
            } => {
                let values: Vec<&str> = parameters.iter().map(|(_, v)| v.as_str()).collect();
                writeln!(out, "\nassistente (modelo {name}): {}", values.join(" · "))
            }
        };
        Ok(Sent {
            wamid: format!("wamid.chat-{}", Uuid::now_v7()),
            wa_id: None,
        })
    }

    async fn media(&self, _account: &Account, _media_id: &str) -> Result<Vec<u8>, MediaError> {
        Err(MediaError::NotFound)
    }

    fn local(&self) -> bool {
        true
    }
}

/// The clinic a `--clinic` argument names: its id, or its name written as a slug
/// (`clinica-harmonia-demo` for "Clínica Harmonia (demo)").
pub async fn find_clinic(kernel: &Kernel, wanted: &str) -> Result<Option<(Uuid, String)>, Error> {
    #[derive(QueryableByName)]
    struct Clinic {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
        #[diesel(sql_type = Text)]
        name: String,
    }
    let clinics: Vec<Clinic> = kernel
        .db
        .system("whatsapp.chat", |conn| {
            async move {
                sql("SELECT id, name FROM tenants ORDER BY created_at")
                    .load(conn)
                    .await
                    .map_err(Error::from)
            }
            .scope_boxed()
        })
        .await?;
    let wanted = wanted.trim().to_lowercase();
    Ok(clinics
        .into_iter()
        .find(|c| c.id.to_string() == wanted || slug(&c.name) == wanted)
        .map(|c| (c.id, c.name)))
}

/// Whether this process can open the clinic's keys (a clinic made under another master
/// key cannot be read).
pub async fn check_keys(kernel: &Kernel, tenant: Uuid) -> Result<(), Error> {
    let scope = TenantScope::clinic(tenant);
    kernel
        .db
        .tenant(scope, |conn| {
            async move {
                crate::store::clinic_cipher(conn, kernel, tenant)
                    .await
                    .map(drop)
            }
            .scope_boxed()
        })
        .await
}

/// A clinic's name as a slug: lower case, no accents, words joined by `-`.
pub fn slug(name: &str) -> String {
    crate::nlu::text::tokens(name).join("-")
}

/// Talks with the assistant of `tenant` as the contact `phone` until end of input.
pub async fn run(kernel: &Kernel, tenant: Uuid, clinic: &str, phone: &str) -> anyhow::Result<()> {
    let wa_id: String = phone.chars().filter(char::is_ascii_digit).collect();
    anyhow::ensure!(
        (10..=15).contains(&wa_id.len()),
        "--phone must be a number with country and area code, e.g. +55 11 98765-4321"
    );
    // The built-in engine, offline, printing to the terminal.
    let mut config = Whatsapp::of(kernel)?.config.clone();
    config.engine = crate::config::EngineChoice::Builtin;
    config.openai_api_key = None;
    kernel
        .extensions
        .insert(Whatsapp::new(config, Some(Arc::new(Terminal)))?);
    // The terminal is this command's interface: what it writes is the conversation.
    let mut out = std::io::stdout();
    writeln!(
        out,
        "Conversa com a assistente da {clinic} como {phone} (Ctrl-D para sair). As mensagens \
         ficam guardadas como as do WhatsApp."
    )?;
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        write!(out, "\nvocê: ")?;
        out.flush()?;
        let Some(line) = lines.next_line().await? else {
            writeln!(out)?;
            return Ok(());
        };
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        let value = serde_json::from_value(json!({
            "metadata": {"phone_number_id": "0"},
            "contacts": [{"profile": {"name": "Terminal"}, "wa_id": wa_id}],
            "messages": [{
                "from": wa_id, "id": format!("wamid.chat-in-{}", Uuid::now_v7()),
                "timestamp": chrono::Utc::now().timestamp().to_string(),
                "type": "text", "text": {"body": text}
            }]
        }))?;
        let stored = webhook::store_for_clinic(kernel, tenant, &value).await?;
        for conversation in stored.fresh {
            assistant::process(kernel, tenant, conversation).await?;
            wait_for_replies(kernel, tenant, conversation).await?;
        }
    }
}

/// Waits until every queued reply of the conversation went out (ten seconds at most).
async fn wait_for_replies(kernel: &Kernel, tenant: Uuid, conversation: Uuid) -> anyhow::Result<()> {
    #[derive(QueryableByName)]
    struct Pending {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let scope = TenantScope::clinic(tenant);
    for _ in 0..330 {
        let pending: Pending = kernel
            .db
            .tenant(scope, |conn| {
                async move {
                    sql(
                        "SELECT count(*) AS n FROM whatsapp_messages WHERE conversation_id = $1 \
                         AND status IN ('pending', 'sending')",
                    )
                    .bind::<SqlUuid, _>(conversation)
                    .get_result(conn)
                    .await
                    .map_err(Error::from)
                }
                .scope_boxed()
            })
            .await?;
        if pending.n == 0 {
            return Ok(());
        }
        crate::sender::sweep(kernel).await?;
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn clinic_names_become_slugs() {
        assert_eq!(
            super::slug("Clínica Harmonia (demo)"),
            "clinica-harmonia-demo"
        );
        assert_eq!(super::slug("  Estética  Bela Pele "), "estetica-bela-pele");
    }
}
