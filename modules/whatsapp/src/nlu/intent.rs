//! What a message asks for, from its words. Rules are checked from the most specific to
//! the most general, so that "desmarcar" is a cancellation before it is a booking and
//! "cancelar as mensagens" is an opt-out before it is a cancellation.

use serde::{Deserialize, Serialize};

/// What the patient wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Intent {
    /// Stop every non-essential message (LGPD consent revocation).
    Stop,
    /// Receive messages again after a stop.
    Resume,
    /// Erase the stored conversation.
    DeleteConversations,
    /// Talk to a person.
    Human,
    Reschedule,
    Cancel,
    Confirm,
    MyAppointments,
    ClinicInfo,
    Services,
    Availability,
    Book,
    Greeting,
    Thanks,
    /// Yes.
    Affirm,
    /// No.
    Deny,
    Unknown,
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Stop => "stop",
            Intent::Resume => "resume",
            Intent::DeleteConversations => "delete_conversations",
            Intent::Human => "human",
            Intent::Reschedule => "reschedule",
            Intent::Cancel => "cancel",
            Intent::Confirm => "confirm",
            Intent::MyAppointments => "my_appointments",
            Intent::ClinicInfo => "clinic_info",
            Intent::Services => "services",
            Intent::Availability => "availability",
            Intent::Book => "book",
            Intent::Greeting => "greeting",
            Intent::Thanks => "thanks",
            Intent::Affirm => "affirm",
            Intent::Deny => "deny",
            Intent::Unknown => "unknown",
        }
    }
}

/// Normalized words, with the look-ups the rules need.
struct Words<'a>(&'a [String]);

impl Words<'_> {
    fn has(&self, word: &str) -> bool {
        self.0.iter().any(|w| w == word)
    }

    fn any(&self, words: &[&str]) -> bool {
        words.iter().any(|w| self.has(w))
    }

    /// A word starting with one of `stems`.
    fn stem(&self, stems: &[&str]) -> bool {
        self.0
            .iter()
            .any(|w| stems.iter().any(|s| w.starts_with(s)))
    }

    /// The words of `phrase`, consecutively.
    fn phrase(&self, phrase: &str) -> bool {
        let wanted: Vec<&str> = phrase.split(' ').collect();
        self.0
            .windows(wanted.len())
            .any(|window| window.iter().zip(&wanted).all(|(a, b)| a == b))
    }

    fn phrases(&self, phrases: &[&str]) -> bool {
        phrases.iter().any(|p| self.phrase(p))
    }

    /// The whole message is one of `messages`.
    fn only(&self, messages: &[&str]) -> bool {
        let text = self.0.join(" ");
        messages.contains(&text.as_str())
    }
}

/// The intent of a normalized message.
pub fn classify(words: &[String]) -> Intent {
    let w = Words(words);
    if words.is_empty() {
        return Intent::Unknown;
    }
    let negated = w.has("nao");

    // Opt-out and its undoing, before anything that shares their words.
    if w.only(&[
        "parar",
        "pare",
        "para",
        "sair",
        "stop",
        "cancelar",
        "descadastrar",
        "chega",
        "parar mensagens",
        "cancelar mensagens",
        "sair da lista",
    ]) && !w.only(&["cancelar"])
    {
        return Intent::Stop;
    }
    let messages = w.any(&[
        "mensagem",
        "mensagens",
        "lembrete",
        "lembretes",
        "notificacoes",
        "avisos",
    ]);
    if w.phrases(&[
        "nao quero mais receber",
        "nao quero receber",
        "parar de receber",
        "pare de mandar",
        "pare de enviar",
        "parem de mandar",
        "parem de enviar",
        "nao me mande",
        "nao me mandem",
        "nao envie mais",
        "nao mande mais",
        "sair da lista",
        "remover meu numero",
        "remova meu numero",
        "tirar meu numero",
        "tire meu numero",
        "cancelar inscricao",
    ]) || w.has("descadastrar")
        || (messages
            && w.any(&[
                "parar",
                "pare",
                "bloquear",
                "desativar",
                "cancelar",
                "suspender",
            ]))
    {
        return Intent::Stop;
    }
    if w.only(&["voltar", "ativar", "reativar", "start", "voltar a receber"])
        || w.phrases(&[
            "quero voltar a receber",
            "pode voltar a mandar",
            "voltar a receber",
        ])
        || (messages && w.any(&["ativar", "reativar", "voltar"]) && !negated)
    {
        return Intent::Resume;
    }

    // Erasure of the conversation.
    let erase = w.stem(&[
        "apag", "exclu", "delet", "limpa", "elimin", "remov", "esquec",
    ]);
    let what = w.any(&[
        "conversa",
        "conversas",
        "mensagens",
        "historico",
        "dados",
        "chat",
    ]);
    if erase && what {
        return Intent::DeleteConversations;
    }

    // A person.
    if w.any(&[
        "atendente",
        "humano",
        "humana",
        "recepcionista",
        "secretaria",
        "operador",
    ]) || w.phrases(&[
        "falar com alguem",
        "falar com uma pessoa",
        "falar com a clinica",
        "falar com a recepcao",
        "falar com voces",
        "pessoa de verdade",
        "atendimento humano",
        "me liga",
        "me ligar",
        "pode me ligar",
    ]) {
        return Intent::Human;
    }

    // Changing an appointment.
    let appointment_words = w.any(&[
        "horario",
        "dia",
        "data",
        "consulta",
        "agendamento",
        "marcacao",
        "sessao",
        "hora",
        "atendimento",
    ]);
    if w.stem(&["remarc", "reagend", "reprogram"])
        || (w.stem(&["mud", "troc", "alter", "adia", "passar"]) && appointment_words)
    {
        return Intent::Reschedule;
    }
    if w.stem(&["cancel", "desmarc"])
        || w.phrases(&[
            "nao vou poder ir",
            "nao vou poder comparecer",
            "nao vou conseguir ir",
            "nao vou conseguir comparecer",
            "nao poderei ir",
            "nao poderei comparecer",
            "nao posso ir",
            "nao vou mais",
            "nao vou comparecer",
            "nao consigo ir",
            "nao vou ir",
        ])
    {
        return Intent::Cancel;
    }
    if (w.stem(&["confirm"]) && !negated)
        || w.phrases(&[
            "vou sim",
            "estarei la",
            "estarei ai",
            "vou estar la",
            "pode contar comigo",
            "to confirmado",
            "ta confirmado",
        ])
    {
        return Intent::Confirm;
    }

    // Questions.
    let mine = w.any(&["meu", "meus", "minha", "minhas"]);
    let booking_words = w.any(&[
        "agendamento",
        "agendamentos",
        "consulta",
        "consultas",
        "horario",
        "horarios",
        "sessao",
        "sessoes",
        "atendimento",
        "procedimento",
    ]);
    if (mine && booking_words && !w.stem(&["agendar", "marcar"]))
        || w.phrases(&[
            "tenho horario",
            "tenho algum horario",
            "tenho consulta",
            "tenho alguma consulta",
            "tenho algo marcado",
            "tenho agendamento",
            "o que tenho marcado",
            "estou marcada",
            "estou marcado",
            "ja tenho",
        ])
    {
        return Intent::MyAppointments;
    }
    if w.any(&["endereco", "localizacao", "estacionamento", "localiza"])
        || w.phrases(&[
            "onde fica",
            "onde ficam",
            "onde voces ficam",
            "onde e a clinica",
            "onde e",
            "como chego",
            "como chegar",
            "horario de funcionamento",
            "horarios de funcionamento",
            "que horas abre",
            "que horas abrem",
            "que horas fecha",
            "que horas fecham",
            "voces abrem",
            "voces fecham",
            "esta aberto",
            "estao abertos",
            "abre aos",
            "abrem aos",
            "funcionam aos",
            "funciona aos",
            "qual o telefone",
        ])
        || w.has("funcionamento")
    {
        return Intent::ClinicInfo;
    }
    if w.any(&[
        "preco", "precos", "valor", "valores", "tabela", "custa", "custam", "cobram",
    ]) || w.phrases(&[
        "quanto e",
        "quanto fica",
        "quanto sai",
        "o que voces fazem",
        "quais servicos",
        "quais os servicos",
        "quais procedimentos",
        "quais os procedimentos",
        "que servicos",
        "que procedimentos",
        "quais tratamentos",
        "que tratamentos",
        "lista de servicos",
    ]) {
        return Intent::Services;
    }
    let book = w.stem(&["agend", "reserv"])
        || w.0.iter().any(|t| t.starts_with("marc") && t != "marco")
        || w.phrases(&[
            "quero fazer",
            "queria fazer",
            "gostaria de fazer",
            "quero uma",
            "quero um",
            "queria uma",
            "queria um",
            "quero ir",
            "posso ir",
        ]);
    let availability = w.any(&[
        "vaga",
        "vagas",
        "disponivel",
        "disponiveis",
        "disponibilidade",
        "livre",
        "livres",
        "agenda",
    ]) || w.phrases(&[
        "tem horario",
        "tem horarios",
        "tem algum horario",
        "quais horarios",
        "qual horario",
        "que horario",
        "que horarios",
        "quando tem",
        "quando voces tem",
        "tem como",
    ]);
    if book && !(availability && w.phrases(&["saber se", "saber quais", "saber qual"])) {
        return Intent::Book;
    }
    if availability || w.any(&["horario", "horarios"]) {
        return Intent::Availability;
    }

    // Small talk and answers.
    if w.only(&[
        "oi",
        "ola",
        "opa",
        "oie",
        "oii",
        "hey",
        "hello",
        "bom dia",
        "boa tarde",
        "boa noite",
        "oi bom dia",
        "oi boa tarde",
        "oi boa noite",
        "ola bom dia",
        "ola boa tarde",
        "ola boa noite",
        "e ai",
        "tudo bem",
        "oi tudo bem",
        "ola tudo bem",
        "salve",
        "alo",
    ]) || (words.len() <= 4 && w.any(&["oi", "ola", "opa", "oie"]))
        || (words.len() <= 4 && w.phrases(&["bom dia", "boa tarde", "boa noite"]))
    {
        return Intent::Greeting;
    }
    if w.only(&[
        "nao",
        "nao obrigado",
        "nao obrigada",
        "nenhum",
        "nenhuma",
        "negativo",
        "melhor nao",
        "agora nao",
        "nao quero",
        "nem",
        "nao pode",
        "nao da",
    ]) || (words.len() <= 3 && negated)
    {
        return Intent::Deny;
    }
    if w.only(&[
        "sim",
        "isso",
        "isso mesmo",
        "pode",
        "pode ser",
        "ok",
        "claro",
        "certo",
        "perfeito",
        "fechado",
        "beleza",
        "exato",
        "yes",
        "uhum",
        "aham",
        "bora",
        "combinado",
        "quero",
        "sim por favor",
        "sim pode",
        "pode sim",
        "com certeza",
        "show",
        "otimo",
        "sim quero",
        "ok pode ser",
        "ta bom",
        "ta",
        "esta bem",
        "certeza",
        "positivo",
        "isso ai",
        "top",
    ]) || (words.len() <= 3 && w.any(&["sim", "pode", "claro", "ok"]))
    {
        return Intent::Affirm;
    }
    if w.any(&[
        "obrigado", "obrigada", "valeu", "agradeco", "grato", "grata",
    ]) {
        return Intent::Thanks;
    }
    Intent::Unknown
}

/// A choice among numbered options: "2", "a segunda", "opção 3", "o primeiro", "última"
/// (`last` is the number of options, for "the last one"). One-based.
pub fn choice(words: &[String], last: usize) -> Option<usize> {
    let w = Words(words);
    let ordinals: [(&[&str], usize); 5] = [
        (&["primeira", "primeiro", "1a", "1o"], 1),
        (&["segunda", "segundo", "2a", "2o"], 2),
        (&["terceira", "terceiro", "3a", "3o"], 3),
        (&["quarta", "quarto", "4a", "4o"], 4),
        (&["quinta", "quinto", "5a", "5o"], 5),
    ];
    let short = words.len() <= 4;
    // A bare number, or "opção 2" / "número 2".
    let bare = words.len() == 1 && words[0].len() <= 2;
    for (i, word) in words.iter().enumerate() {
        let cued = i > 0
            && matches!(
                words[i - 1].as_str(),
                "opcao" | "numero" | "n" | "alternativa"
            );
        if (bare || cued)
            && let Ok(n) = word.parse::<usize>()
        {
            return (1..=last).contains(&n).then_some(n);
        }
    }
    if short {
        for (names, n) in ordinals {
            // "segunda" alone could be Monday; as a choice it comes with an article or
            // "opção", or alone when options are on the table (the caller decides).
            if w.any(names) && n <= last {
                return Some(n);
            }
        }
        if w.any(&["ultima", "ultimo"]) && last > 0 {
            return Some(last);
        }
    }
    None
}
