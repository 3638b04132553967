//! The built-in Brazilian Portuguese understanding: what a message asks for ([`Intent`])
//! and for when ([`When`]), offline, tolerant of missing accents, capitals and common
//! typos. The dialogue ([`crate::engine`]) decides what to do with it.

pub mod intent;
pub mod text;
pub mod when;

use chrono::NaiveDate;

pub use intent::Intent;
pub use when::{Day, Period, TimeOfDay, When};

/// What the engine made of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Understanding {
    pub intent: Intent,
    pub when: When,
    /// The normalized words, for matching service names and choices.
    pub words: Vec<String>,
}

/// Reads a message against the clinic's local date.
pub fn understand(message: &str, today: NaiveDate) -> Understanding {
    let words = text::tokens(message);
    Understanding {
        intent: intent::classify(&words),
        when: when::parse(&words, today),
        words,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wednesday, 9 December 2026, in the clinic's time zone.
    fn today() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 12, 9).unwrap()
    }

    /// Messages as patients write them, with the intent and the `When` (see
    /// [`When::describe`]) the engine must read in them on Wednesday 2026-12-09.
    const UTTERANCES: &[(&str, Intent, &str)] = &[
        // Booking, with every way of saying when.
        (
            "Quero agendar uma limpeza de pele amanhã à tarde",
            Intent::Book,
            "2026-12-10 tarde",
        ),
        (
            "quero marcar limpeza de pele amanha as 15h",
            Intent::Book,
            "2026-12-10 15:00",
        ),
        (
            "Gostaria de agendar para a próxima terça às 15h",
            Intent::Book,
            "2026-12-15 15:00",
        ),
        (
            "Queria marcar dia 12/12 às 9:30",
            Intent::Book,
            "2026-12-12 09:30",
        ),
        (
            "Dá pra agendar sexta de manhã?",
            Intent::Book,
            "2026-12-11 manha",
        ),
        (
            "quero agendar ao meio-dia de amanhã",
            Intent::Book,
            "2026-12-10 12:00",
        ),
        (
            "agendar meio dia e meia na quinta",
            Intent::Book,
            "2026-12-10 12:30",
        ),
        (
            "marcar depois de amanhã às 10h",
            Intent::Book,
            "2026-12-11 10:00",
        ),
        (
            "Quero marcar hoje à noite",
            Intent::Book,
            "2026-12-09 noite",
        ),
        (
            "agendar segunda-feira às 14:30",
            Intent::Book,
            "2026-12-14 14:30",
        ),
        ("agenda pra mim sábado 9h", Intent::Book, "2026-12-12 09:00"),
        (
            "queria fazer uma massagem no domingo",
            Intent::Book,
            "2026-12-13 -",
        ),
        ("quero agendar 25 de dezembro", Intent::Book, "2026-12-25 -"),
        (
            "marca pra mim dia 20 as 16h",
            Intent::Book,
            "2026-12-20 16:00",
        ),
        (
            "quero agendar dia 5 de janeiro as 11h",
            Intent::Book,
            "2027-01-05 11:00",
        ),
        ("agendar 12/01 as 8h", Intent::Book, "2027-01-12 08:00"),
        (
            "quero marcar na terça da semana que vem",
            Intent::Book,
            "2026-12-15 -",
        ),
        (
            "agendar sexta da próxima semana à tarde",
            Intent::Book,
            "2026-12-18 tarde",
        ),
        (
            "quero agendar semana que vem",
            Intent::Book,
            "2026-12-14..2026-12-20 -",
        ),
        (
            "Quero agendar às 3 da tarde amanhã",
            Intent::Book,
            "2026-12-10 15:00",
        ),
        ("agendar amanha as 2", Intent::Book, "2026-12-10 14:00"),
        (
            "agendar amanhã às duas e meia",
            Intent::Book,
            "2026-12-10 14:30",
        ),
        (
            "marcar às 10 e meia da manhã na sexta",
            Intent::Book,
            "2026-12-11 10:30",
        ),
        (
            "quero agendar essa sexta depois das 17h",
            Intent::Book,
            "2026-12-11 >17:00",
        ),
        (
            "agendar quinta antes das 10",
            Intent::Book,
            "2026-12-10 <10:00",
        ),
        (
            "agendar quarta a partir das 14h",
            Intent::Book,
            "2026-12-16 >14:00",
        ),
        ("agendar daqui a 3 dias", Intent::Book, "2026-12-12 -"),
        (
            "quero reservar um horário em 2 dias",
            Intent::Book,
            "2026-12-11 -",
        ),
        (
            "agendar daqui a uma semana de manhã",
            Intent::Book,
            "2026-12-16 manha",
        ),
        (
            "QUERO AGENDAR AMANHA CEDO",
            Intent::Book,
            "2026-12-10 manha",
        ),
        (
            "qro agendar amanah a tarde",
            Intent::Book,
            "2026-12-10 tarde",
        ),
        (
            "quero agnedar sesta as 15hs",
            Intent::Book,
            "2026-12-11 15:00",
        ),
        ("agendar 15h30 de terça", Intent::Book, "2026-12-15 15:30"),
        (
            "agendar dia 18/12/2026 às 13:00",
            Intent::Book,
            "2026-12-18 13:00",
        ),
        (
            "gostaria de fazer limpeza de pele no fim de semana",
            Intent::Book,
            "2026-12-12..2026-12-13 -",
        ),
        (
            "quero uma sessão de massagem mês que vem",
            Intent::Book,
            "2027-01-01..2027-01-31 -",
        ),
        ("quero marcar às 8 da noite", Intent::Book, "- 20:00"),
        (
            "agendar essa quarta às 18h",
            Intent::Book,
            "2026-12-09 18:00",
        ),
        (
            "pode agendar pra mim amanhã no fim da tarde?",
            Intent::Book,
            "2026-12-10 >16:00",
        ),
        (
            "Bom dia! Quero agendar amanhã",
            Intent::Book,
            "2026-12-10 -",
        ),
        (
            "Boa tarde, gostaria de marcar uma avaliação sexta às 9",
            Intent::Book,
            "2026-12-11 09:00",
        ),
        ("boa noite quero agendar", Intent::Book, "- -"),
        // Availability.
        (
            "Vocês têm horário para avaliação de preenchimento labial na próxima terça à tarde?",
            Intent::Availability,
            "2026-12-15 tarde",
        ),
        ("tem horario amanha?", Intent::Availability, "2026-12-10 -"),
        ("tem vaga na sexta?", Intent::Availability, "2026-12-11 -"),
        (
            "Quais horários disponíveis para quinta de manhã?",
            Intent::Availability,
            "2026-12-10 manha",
        ),
        (
            "qual a disponibilidade de sábado?",
            Intent::Availability,
            "2026-12-12 -",
        ),
        (
            "tem horário livre hoje depois das 16h?",
            Intent::Availability,
            "2026-12-09 >16:00",
        ),
        ("quando tem horario?", Intent::Availability, "- -"),
        (
            "tem algum horário semana que vem à noite",
            Intent::Availability,
            "2026-12-14..2026-12-20 noite",
        ),
        (
            "horarios pra dia 15/12",
            Intent::Availability,
            "2026-12-15 -",
        ),
        (
            "tem vaga às 9:30 de segunda?",
            Intent::Availability,
            "2026-12-14 09:30",
        ),
        (
            "tem disponivel 11h amanha",
            Intent::Availability,
            "2026-12-10 11:00",
        ),
        (
            "tem horário essa semana?",
            Intent::Availability,
            "2026-12-09..2026-12-13 -",
        ),
        ("tem horario ao meio dia?", Intent::Availability, "- 12:00"),
        // Confirming.
        ("Confirmo", Intent::Confirm, "- -"),
        ("confirmado!", Intent::Confirm, "- -"),
        (
            "quero confirmar minha consulta de amanhã",
            Intent::Confirm,
            "2026-12-10 -",
        ),
        ("Vou sim, pode confirmar", Intent::Confirm, "- -"),
        ("estarei lá", Intent::Confirm, "- -"),
        ("confirma pra mim", Intent::Confirm, "- -"),
        ("confirmar", Intent::Confirm, "- -"),
        ("cofirmo", Intent::Confirm, "- -"),
        // Cancelling.
        ("Preciso cancelar minha consulta", Intent::Cancel, "- -"),
        (
            "quero cancelar o horário de amanhã",
            Intent::Cancel,
            "2026-12-10 -",
        ),
        ("desmarcar por favor", Intent::Cancel, "- -"),
        ("não vou poder ir amanhã", Intent::Cancel, "2026-12-10 -"),
        (
            "nao vou conseguir ir na sexta",
            Intent::Cancel,
            "2026-12-11 -",
        ),
        (
            "cancela minha sessão de sexta",
            Intent::Cancel,
            "2026-12-11 -",
        ),
        ("cancelr", Intent::Cancel, "- -"),
        ("CANCELAR", Intent::Cancel, "- -"),
        ("Infelizmente não posso ir", Intent::Cancel, "- -"),
        // Rescheduling.
        ("Quero remarcar", Intent::Reschedule, "- -"),
        (
            "preciso remarcar para sexta às 10h",
            Intent::Reschedule,
            "2026-12-11 10:00",
        ),
        (
            "dá pra mudar meu horário para amanhã à tarde?",
            Intent::Reschedule,
            "2026-12-10 tarde",
        ),
        ("reagendar para segunda", Intent::Reschedule, "2026-12-14 -"),
        (
            "quero trocar o dia da minha consulta",
            Intent::Reschedule,
            "- -",
        ),
        (
            "pode adiar minha sessão para semana que vem?",
            Intent::Reschedule,
            "2026-12-14..2026-12-20 -",
        ),
        (
            "remarca pra quinta 14h",
            Intent::Reschedule,
            "2026-12-10 14:00",
        ),
        (
            "alterar a data do meu agendamento",
            Intent::Reschedule,
            "- -",
        ),
        // My appointments.
        (
            "Quais são meus agendamentos?",
            Intent::MyAppointments,
            "- -",
        ),
        ("que horas é minha consulta?", Intent::MyAppointments, "- -"),
        ("tenho horário marcado?", Intent::MyAppointments, "- -"),
        (
            "quando é minha próxima sessão?",
            Intent::MyAppointments,
            "- -",
        ),
        (
            "o que tenho marcado essa semana",
            Intent::MyAppointments,
            "2026-12-09..2026-12-13 -",
        ),
        ("meus horarios", Intent::MyAppointments, "- -"),
        // Services and prices.
        ("Quais serviços vocês fazem?", Intent::Services, "- -"),
        ("quanto custa a limpeza de pele?", Intent::Services, "- -"),
        ("qual o valor do preenchimento?", Intent::Services, "- -"),
        ("me manda a tabela de preços", Intent::Services, "- -"),
        ("quais procedimentos tem?", Intent::Services, "- -"),
        ("preço da massagem", Intent::Services, "- -"),
        // The clinic.
        ("Qual o endereço?", Intent::ClinicInfo, "- -"),
        ("onde fica a clínica?", Intent::ClinicInfo, "- -"),
        (
            "qual o horário de funcionamento?",
            Intent::ClinicInfo,
            "- -",
        ),
        (
            "que horas vocês abrem no sábado?",
            Intent::ClinicInfo,
            "2026-12-12 -",
        ),
        ("tem estacionamento?", Intent::ClinicInfo, "- -"),
        ("como chego aí?", Intent::ClinicInfo, "- -"),
        // A person.
        ("Quero falar com um atendente", Intent::Human, "- -"),
        ("posso falar com alguém?", Intent::Human, "- -"),
        ("atendimento humano por favor", Intent::Human, "- -"),
        ("me liga por favor", Intent::Human, "- -"),
        ("quero falar com a recepção", Intent::Human, "- -"),
        // Stopping messages (opt-out) and coming back.
        ("PARAR", Intent::Stop, "- -"),
        ("sair", Intent::Stop, "- -"),
        ("Stop", Intent::Stop, "- -"),
        ("não quero mais receber mensagens", Intent::Stop, "- -"),
        ("pare de mandar mensagem", Intent::Stop, "- -"),
        ("cancelar mensagens", Intent::Stop, "- -"),
        ("quero parar de receber lembretes", Intent::Stop, "- -"),
        ("remover meu número da lista", Intent::Stop, "- -"),
        ("voltar a receber", Intent::Resume, "- -"),
        ("quero ativar as mensagens de novo", Intent::Resume, "- -"),
        // Erasing the conversation.
        (
            "apagar minhas conversas",
            Intent::DeleteConversations,
            "- -",
        ),
        (
            "quero que vocês excluam meus dados",
            Intent::DeleteConversations,
            "- -",
        ),
        (
            "deletar meu histórico de mensagens",
            Intent::DeleteConversations,
            "- -",
        ),
        (
            "Apague esta conversa, por favor",
            Intent::DeleteConversations,
            "- -",
        ),
        // Greetings, thanks, yes and no.
        ("Oi", Intent::Greeting, "- -"),
        ("olá, tudo bem?", Intent::Greeting, "- -"),
        ("Bom dia", Intent::Greeting, "- -"),
        ("boa tarde!", Intent::Greeting, "- -"),
        ("e aí", Intent::Greeting, "- -"),
        ("obrigada!", Intent::Thanks, "- -"),
        ("valeu", Intent::Thanks, "- -"),
        ("muito obrigado pela ajuda", Intent::Thanks, "- -"),
        ("sim", Intent::Affirm, "- -"),
        ("pode ser", Intent::Affirm, "- -"),
        ("Isso mesmo", Intent::Affirm, "- -"),
        ("ok", Intent::Affirm, "- -"),
        ("s", Intent::Affirm, "- -"),
        ("não", Intent::Deny, "- -"),
        ("nao, obrigado", Intent::Deny, "- -"),
        ("agora não", Intent::Deny, "- -"),
        ("asdfgh", Intent::Unknown, "- -"),
        ("o tempo está bonito hoje", Intent::Unknown, "2026-12-09 -"),
    ];

    #[test]
    fn the_utterance_table_reads_as_expected() {
        assert!(UTTERANCES.len() >= 100, "{} utterances", UTTERANCES.len());
        let mut wrong = Vec::new();
        for (message, intent, when) in UTTERANCES {
            let got = understand(message, today());
            if got.intent != *intent || got.when.describe() != *when {
                wrong.push(format!(
                    "{message:?}: expected {} / {when}, got {} / {} ({})",
                    intent.as_str(),
                    got.intent.as_str(),
                    got.when.describe(),
                    got.words.join(" ")
                ));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {} wrong:\n{}",
            wrong.len(),
            UTTERANCES.len(),
            wrong.join("\n")
        );
    }

    #[test]
    fn choices_among_offered_options() {
        let pick = |m: &str| intent::choice(&text::tokens(m), 4);
        assert_eq!(pick("2"), Some(2));
        assert_eq!(pick("opção 3"), Some(3));
        assert_eq!(pick("a primeira"), Some(1));
        assert_eq!(pick("o segundo horário"), Some(2));
        assert_eq!(pick("a última"), Some(4));
        assert_eq!(pick("7"), None);
        assert_eq!(pick("quero agendar amanhã às 15h"), None);
    }

    #[test]
    fn times_admit_what_was_asked() {
        let t = |h, m| chrono::NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert!(TimeOfDay::In(Period::Afternoon).admits(t(14, 0)));
        assert!(!TimeOfDay::In(Period::Afternoon).admits(t(11, 30)));
        assert!(TimeOfDay::After(t(15, 0)).admits(t(15, 0)));
        assert!(!TimeOfDay::Before(t(10, 0)).admits(t(10, 0)));
        assert!(TimeOfDay::At(t(15, 0)).admits(t(15, 30)));
        assert!(!TimeOfDay::At(t(15, 0)).admits(t(16, 0)));
    }
}
