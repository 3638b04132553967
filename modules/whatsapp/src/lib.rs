//! The WhatsApp module: the clinic's booking assistant over the WhatsApp Cloud API, by
//! text and voice, with confirmations, reminders, opt-out and erasure of conversations.
//!
//! A webhook ([`webhook`]) checks Meta's signature, stores each message and status once
//! (text sealed under the conversation's key) with the event that wakes the assistant,
//! and answers at once. Outbound messages are rows queued with what caused them, which
//! [`sender`] delivers with retries and backoff, the sweep job catching what is left.
//! Staff see conversations, statuses and failures, and reply, through [`conversations`];
//! the clinic configures its number, token and templates through [`api`]. The pieces the
//! assistant is built from are here: the pt-BR understanding ([`nlu`]), the Graph API
//! client ([`graph`]) and the OpenAI client ([`openai`]).
//!
//! The assistant ([`assistant`]) answers each stored message off the request path (right
//! after the commit, and from the outbox should that not happen), through an [`engine`]
//! acting with the shared tools; the built-in pt-BR dialogue is [`dialogue`].
//!
//! With an OpenAI key the engine is [`llm`] (chat completions calling the same tools),
//! which falls back to the built-in one when OpenAI fails. Confirmations, reminders and
//! waitlist offers go out from [`notices`], once each.

pub mod api;
pub mod assistant;
pub mod chat;
pub mod config;
pub mod conversations;
pub mod dialogue;
pub mod engine;
pub mod graph;
pub mod llm;
pub mod nlu;
pub mod notices;
pub mod openai;
pub mod payload;
mod schema;
pub mod sender;
pub mod signature;
pub mod store;
pub mod webhook;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel_migrations::{EmbeddedMigrations, embed_migrations};
use futures::FutureExt as _;
use harmony_core::auth::{Actor, ActorKind};
use harmony_core::events::Subscription;
use harmony_core::http::RequestContext;
use harmony_core::jobs::JobSpec;
use harmony_core::rbac::{Permission, Role};
use harmony_core::{Kernel, Module, ModuleApi};
use uuid::Uuid;

use crate::config::{EngineChoice, WhatsappConfig};
use crate::engine::Engine;
use crate::graph::{Account, Graph, MediaError, Outgoing, Recipient, SendError, Sent};
use crate::openai::OpenAi;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations/whatsapp");

/// What each role may do with the clinic's WhatsApp.
pub mod perm {
    use super::{Permission, Role};
    use Role::*;
    use harmony_core::rbac::permission as p;

    const FRONT_DESK: &[Role] = &[Owner, Admin, Professional, Receptionist];
    const MANAGERS: &[Role] = &[Owner, Admin];

    /// Conversations and their messages (every read is audited).
    pub const CONVERSATIONS_READ: Permission = p("whatsapp_conversations", "read", FRONT_DESK);
    /// Reply by hand, take over from the assistant and hand back.
    pub const CONVERSATIONS_REPLY: Permission = p("whatsapp_conversations", "reply", FRONT_DESK);
    /// Record a contact's opt-out, erase a conversation.
    pub const CONVERSATIONS_MANAGE: Permission = p(
        "whatsapp_conversations",
        "manage",
        &[Owner, Admin, Receptionist],
    );
    /// The clinic's number, token, templates and reminder times.
    pub const SETTINGS_MANAGE: Permission = p("whatsapp_settings", "manage", MANAGERS);

    pub const ALL: &[Permission] = &[
        CONVERSATIONS_READ,
        CONVERSATIONS_REPLY,
        CONVERSATIONS_MANAGE,
        SETTINGS_MANAGE,
    ];
}

/// Tags of the module's operations.
#[derive(Debug, poem_openapi::Tags)]
pub enum WhatsappTags {
    /// The WhatsApp assistant: settings, conversations, and Meta's webhook.
    Whatsapp,
}

/// Where messages go out and media comes from: Meta's Graph API, or a stand-in (the
/// terminal of `harmony chat`).
#[async_trait::async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn send(
        &self,
        account: &Account,
        to: &Recipient,
        message: &Outgoing,
    ) -> Result<Sent, SendError>;

    async fn media(&self, account: &Account, media_id: &str) -> Result<Vec<u8>, MediaError>;

    /// Whether this is a local stand-in that needs no clinic number or token
    /// (`harmony chat`).
    fn local(&self) -> bool {
        false
    }
}

#[async_trait::async_trait]
impl Transport for Graph {
    async fn send(
        &self,
        account: &Account,
        to: &Recipient,
        message: &Outgoing,
    ) -> Result<Sent, SendError> {
        Graph::send(self, account, to, message).await
    }

    async fn media(&self, account: &Account, media_id: &str) -> Result<Vec<u8>, MediaError> {
        Graph::media(self, account, media_id).await
    }
}

/// Installs the process's TLS primitives (ring), which reqwest leaves to the application;
/// any HTTP client of the process needs them, so binaries building one call this first.
/// A provider installed earlier stays.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How long a phone number id's clinic is remembered (a number moved to another clinic is
/// noticed within this time on other replicas).
const ROUTE_TTL: Duration = Duration::from_secs(60);
/// How long a clinic's settings are reused by the assistant.
const CLINIC_TTL: Duration = Duration::from_secs(5);

/// What the assistant needs of a clinic for every message.
#[derive(Debug, Clone)]
pub struct Clinic {
    pub settings: store::Settings,
    pub name: String,
}

/// Pieces of work (sends, conversations) run at once on the fast path; beyond it the
/// sweep and the outbox take over. One: on two cores a second worker answered bursts
/// sooner but left the webhook too little CPU to acknowledge them in time (p99 at 500
/// messages a second from 6 to 40 ms, run to run, against 6 ms with one).
const FAST_PATH: usize = 1;

/// The module's running parts, in `kernel.extensions`.
pub struct Whatsapp {
    pub config: WhatsappConfig,
    pub transport: Arc<dyn Transport>,
    pub openai: Option<OpenAi>,
    pub engine: Arc<dyn Engine>,
    routes: Mutex<HashMap<String, (Option<Uuid>, Instant)>>,
    clinics: Mutex<HashMap<Uuid, (Arc<Clinic>, Instant)>>,
    assistants: Mutex<HashMap<Uuid, Uuid>>,
    fast_path: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Whatsapp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Whatsapp")
            .field("openai", &self.openai.is_some())
            .finish_non_exhaustive()
    }
}

impl Whatsapp {
    /// The module's parts from its configuration, sending through `transport` (Meta's
    /// Graph API when `None`).
    pub fn new(
        config: WhatsappConfig,
        transport: Option<Arc<dyn Transport>>,
    ) -> anyhow::Result<Self> {
        install_tls_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.request_timeout_ms))
            .connect_timeout(Duration::from_secs(5))
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        let transport = transport.unwrap_or_else(|| {
            Arc::new(Graph::new(
                http.clone(),
                &config.graph_url,
                &config.graph_version,
            ))
        });
        let openai = config.openai_api_key.clone().map(|key| {
            OpenAi::new(
                http.clone(),
                &config.openai_url,
                key,
                &config.chat_model,
                &config.transcription_model,
            )
        });
        let engine: Arc<dyn Engine> = match (config.engine, &openai) {
            (EngineChoice::Builtin, _) | (EngineChoice::Auto, None) => Arc::new(dialogue::Builtin),
            (_, Some(ai)) => Arc::new(llm::Llm::new(ai.clone())),
            (EngineChoice::Openai, None) => {
                anyhow::bail!("modules.whatsapp.engine is openai but no openai_api_key is set")
            }
        };
        Ok(Whatsapp {
            config,
            transport,
            openai,
            engine,
            routes: Mutex::default(),
            clinics: Mutex::default(),
            assistants: Mutex::default(),
            fast_path: Arc::new(tokio::sync::Semaphore::new(FAST_PATH)),
        })
    }

    /// The running module of `kernel`.
    pub fn of(kernel: &Kernel) -> harmony_core::Result<Arc<Whatsapp>> {
        kernel.extensions.get::<Whatsapp>().ok_or_else(|| {
            harmony_core::Error::internal(anyhow::anyhow!("the WhatsApp module did not start"))
        })
    }

    /// The clinic a Meta phone number id belongs to, if any.
    pub async fn route(
        &self,
        kernel: &Kernel,
        phone_number_id: &str,
    ) -> harmony_core::Result<Option<Uuid>> {
        if let Ok(routes) = self.routes.lock()
            && let Some((tenant, at)) = routes.get(phone_number_id)
            && at.elapsed() < ROUTE_TTL
        {
            return Ok(*tenant);
        }
        let tenant = store::route(kernel, phone_number_id).await?;
        if let Ok(mut routes) = self.routes.lock() {
            routes.insert(phone_number_id.to_owned(), (tenant, Instant::now()));
        }
        Ok(tenant)
    }

    /// Forgets what is cached of clinics' settings and numbers (after a settings change;
    /// other replicas notice within [`ROUTE_TTL`] and [`CLINIC_TTL`]).
    pub fn forget_routes(&self) {
        if let Ok(mut routes) = self.routes.lock() {
            routes.clear();
        }
        if let Ok(mut clinics) = self.clinics.lock() {
            clinics.clear();
        }
    }

    /// A clinic's WhatsApp settings and name, read at most every [`CLINIC_TTL`], inside
    /// the caller's tenant transaction.
    pub async fn clinic(
        &self,
        conn: &mut harmony_core::db::Conn,
        kernel: &Kernel,
        tenant: Uuid,
    ) -> harmony_core::Result<Arc<Clinic>> {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        if let Ok(clinics) = self.clinics.lock()
            && let Some((clinic, at)) = clinics.get(&tenant)
            && at.elapsed() < CLINIC_TTL
        {
            return Ok(clinic.clone());
        }
        let settings = store::settings(conn, kernel, tenant).await?;
        let name: String = harmony_core::schema::tenants::table
            .find(tenant)
            .select(harmony_core::schema::tenants::name)
            .first(conn)
            .await?;
        let clinic = Arc::new(Clinic { settings, name });
        if let Ok(mut clinics) = self.clinics.lock() {
            clinics.insert(tenant, (clinic.clone(), Instant::now()));
        }
        Ok(clinic)
    }

    /// The assistant's identity in a clinic: a member with the `assistant` role only.
    pub async fn assistant(&self, kernel: &Kernel, tenant: Uuid) -> harmony_core::Result<Actor> {
        let known = self
            .assistants
            .lock()
            .ok()
            .and_then(|m| m.get(&tenant).copied());
        let user = match known {
            Some(user) => user,
            None => {
                // Two first uses at once: the loser's insert fails, and it reads the winner's.
                let user = match harmony_core::tenancy::assistant_identity(kernel, tenant).await {
                    Ok(user) => user,
                    Err(_) => harmony_core::tenancy::assistant_identity(kernel, tenant).await?,
                };
                if let Ok(mut m) = self.assistants.lock() {
                    m.insert(tenant, user);
                }
                user
            }
        };
        Ok(Actor {
            kind: ActorKind::Assistant,
            user_id: user,
            tenant_id: tenant,
            request: Arc::new(RequestContext::new(
                Uuid::now_v7().to_string(),
                None,
                Some("harmony-whatsapp-assistant".into()),
            )),
        })
    }

    /// Runs `work` in the background unless the fast path is full (the sweep or the
    /// outbox does it then).
    pub fn spawn_fast<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        if let Ok(permit) = self.fast_path.clone().try_acquire_owned() {
            tokio::spawn(async move {
                work.await;
                drop(permit);
            });
        }
    }
}

/// The WhatsApp module.
#[derive(Debug, Clone, Copy, Default)]
pub struct WhatsappModule;

impl Module for WhatsappModule {
    fn name(&self) -> &'static str {
        "whatsapp"
    }

    fn migrations(&self) -> Option<EmbeddedMigrations> {
        Some(MIGRATIONS)
    }

    fn permissions(&self) -> &'static [Permission] {
        perm::ALL
    }

    fn init<'a>(
        &'a self,
        kernel: &'a Kernel,
    ) -> futures::future::BoxFuture<'a, anyhow::Result<()>> {
        async move {
            let config: WhatsappConfig = kernel.config.modules.get("whatsapp")?;
            if config.app_secret.is_none() {
                tracing::warn!(
                    "no WhatsApp app secret configured (HARMONY__MODULES__WHATSAPP__APP_SECRET): \
                     every webhook will be refused"
                );
            }
            kernel.extensions.insert(Whatsapp::new(config, None)?);
            Ok(())
        }
        .boxed()
    }

    fn subscriptions(&self) -> Vec<Subscription> {
        vec![
            Subscription {
                name: "whatsapp.assistant",
                topics: &[webhook::MESSAGE_RECEIVED],
                handler: Arc::new(|kernel, event| {
                    async move { assistant::on_message_event(&kernel, &event).await }.boxed()
                }),
            },
            Subscription {
                name: "whatsapp.notices",
                topics: &[
                    "appointment.booked",
                    "appointment.rescheduled",
                    "waitlist.slot_available",
                ],
                handler: Arc::new(|kernel, event| {
                    async move { notices::on_agenda_event(&kernel, &event).await }.boxed()
                }),
            },
        ]
    }

    fn jobs(&self) -> Vec<JobSpec> {
        vec![
            JobSpec {
                name: "whatsapp.retry_sends",
                schedule: "*/10 * * * * *",
                run: Arc::new(|kernel, _| async move { sender::sweep(&kernel).await }.boxed()),
            },
            JobSpec {
                name: "whatsapp.send_reminders",
                schedule: "0 * * * * *",
                run: Arc::new(|kernel, _| {
                    async move { notices::send_reminders(&kernel).await }.boxed()
                }),
            },
        ]
    }
}

impl ModuleApi for WhatsappModule {
    type Api = (
        api::WhatsappApi,
        conversations::ConversationsApi,
        webhook::WebhookApi,
    );

    fn api(&self) -> Self::Api {
        (
            api::WhatsappApi,
            conversations::ConversationsApi,
            webhook::WebhookApi,
        )
    }
}
