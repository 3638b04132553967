//! Text as people type it on a phone, made comparable: lower case, no accents, no
//! punctuation but what dates and times need, common abbreviations spelled out and small
//! typos of the words the assistant listens for corrected.

use unicode_normalization::UnicodeNormalization;

/// The words the engine listens for. A typed word one edit away from one of these (two for
/// long words) is read as it. Listed words are also protected from being "corrected" into
/// a neighbour (`segundo` stays the ordinal, not Monday).
const VOCABULARY: &[&str] = &[
    "amanha",
    "manha",
    "segunda",
    "terca",
    "quarta",
    "quinta",
    "sexta",
    "sabado",
    "domingo",
    "segundo",
    "terceiro",
    "terceira",
    "quarto",
    "quinto",
    "sexto",
    "primeiro",
    "primeira",
    "horario",
    "horarios",
    "agendar",
    "agendamento",
    "agendamentos",
    "marcar",
    "marcado",
    "marcada",
    "desmarcar",
    "remarcar",
    "reagendar",
    "cancelar",
    "cancelamento",
    "confirmar",
    "confirmo",
    "confirmado",
    "confirmada",
    "disponivel",
    "disponiveis",
    "disponibilidade",
    "endereco",
    "localizacao",
    "funcionamento",
    "obrigado",
    "obrigada",
    "consulta",
    "consultas",
    "semana",
    "proxima",
    "proximo",
    "tarde",
    "noite",
    "atendente",
    "procedimento",
    "procedimentos",
    "servico",
    "servicos",
    "conversas",
    "mensagens",
    "historico",
    "avaliacao",
    "quanto",
    "depois",
    "quero",
    "queria",
    "gostaria",
    "preciso",
    "voces",
    "limpeza",
    "preenchimento",
    "massagem",
    "depilacao",
    // Common words a letter away from the ones above, kept as written ("minha" is not a
    // misspelt "manha", nor "quando" a misspelt "quanto").
    "minha",
    "minhas",
    "manda",
    "mande",
    "mandar",
    "quando",
    "quanta",
    "quantos",
    "sessao",
    "sessoes",
    "tenho",
    "tinha",
    "senha",
    "linha",
    "ganha",
];

/// Spelled-out forms of what people abbreviate.
const ABBREVIATIONS: &[(&str, &str)] = &[
    ("vc", "voce"),
    ("vcs", "voces"),
    ("q", "que"),
    ("pq", "porque"),
    ("pra", "para"),
    ("pro", "para o"),
    ("p", "para"),
    ("tb", "tambem"),
    ("tbm", "tambem"),
    ("hj", "hoje"),
    ("amn", "amanha"),
    ("amnh", "amanha"),
    ("obg", "obrigado"),
    ("brigado", "obrigado"),
    ("brigada", "obrigada"),
    ("blz", "beleza"),
    ("msg", "mensagem"),
    ("msgs", "mensagens"),
    ("agd", "agendamento"),
    ("td", "tudo"),
    ("tds", "todos"),
    ("qdo", "quando"),
    ("qnd", "quando"),
    ("qto", "quanto"),
    ("prox", "proxima"),
    ("sab", "sabado"),
    ("dom", "domingo"),
    ("seg", "segunda"),
    ("qua", "quarta"),
    ("qui", "quinta"),
    ("sex", "sexta"),
    ("hrs", "horas"),
    ("hr", "hora"),
    ("min", "minutos"),
    ("ss", "sim"),
    ("s", "sim"),
    ("n", "nao"),
    ("nn", "nao"),
    ("ok", "ok"),
    ("okay", "ok"),
    ("oks", "ok"),
];

/// Lower case, accents and punctuation removed, abbreviations expanded and typos of known
/// words corrected; tokens separated by single spaces. `/` and `:` between digits stay
/// (`12/12`, `9:30`), so do digits glued to letters (`15h30`).
pub fn normalize(text: &str) -> String {
    tokens(text).join(" ")
}

/// The words of [`normalize`].
pub fn tokens(text: &str) -> Vec<String> {
    let folded: String = text
        .nfd()
        .filter(|c| !unicode_normalization::char::is_combining_mark(*c))
        .flat_map(char::to_lowercase)
        .collect();
    let chars: Vec<char> = folded.chars().collect();
    let mut cleaned = String::with_capacity(chars.len());
    for (i, &c) in chars.iter().enumerate() {
        let between_digits = i > 0
            && chars[i - 1].is_ascii_digit()
            && chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if c.is_alphanumeric() {
            cleaned.push(c);
        } else if matches!(c, '/' | ':' | '.' | '-') && between_digits {
            cleaned.push(if c == '.' { ':' } else { c });
        } else {
            cleaned.push(' ');
        }
    }
    let mut out = Vec::new();
    for word in cleaned.split_whitespace() {
        match ABBREVIATIONS.iter().find(|(short, _)| *short == word) {
            Some((_, long)) => out.extend(long.split(' ').map(str::to_owned)),
            None => out.push(correct(word)),
        }
    }
    out
}

/// The vocabulary word `word` was probably meant to be, or `word` itself.
fn correct(word: &str) -> String {
    let len = word.chars().count();
    if len < 5
        || word.chars().any(|c| c.is_ascii_digit())
        || VOCABULARY.contains(&word)
        || super::when::MONTHS.contains(&word)
    {
        return word.to_owned();
    }
    let allowed = if len >= 8 { 2 } else { 1 };
    let mut best: Option<(usize, &str)> = None;
    for candidate in VOCABULARY.iter().chain(&super::when::MONTHS) {
        let d = distance(word, candidate);
        if d <= allowed && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, candidate));
        }
    }
    best.map_or_else(|| word.to_owned(), |(_, w)| (*w).to_owned())
}

/// Optimal string alignment distance: insertions, deletions, substitutions and swaps of
/// neighbours each cost one.
pub fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (n, m) = (a.len(), b.len());
    if n.abs_diff(m) > 2 {
        return n.abs_diff(m);
    }
    let mut d = vec![vec![0usize; m + 1]; n + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=n {
        for j in 1..=m {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            d[i][j] = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
            }
        }
    }
    d[n][m]
}

/// Words that carry no meaning for matching a service name.
pub const STOPWORDS: &[&str] = &[
    "a", "o", "as", "os", "de", "da", "do", "das", "dos", "e", "em", "na", "no", "nas", "nos",
    "um", "uma", "para", "com", "por", "que", "eu", "me", "meu", "minha", "quero", "queria",
    "gostaria", "fazer", "agendar", "marcar", "horario", "sessao", "tem", "voces", "voce",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accents_case_and_punctuation_go_dates_and_times_stay() {
        assert_eq!(
            normalize("Olá!! Vocês têm horário p/ AMANHÃ às 9:30?"),
            "ola voces tem horario para amanha as 9:30"
        );
        assert_eq!(normalize("dia 12/12, 15h30."), "dia 12/12 15h30");
        assert_eq!(normalize("às 9.30"), "as 9:30");
        assert_eq!(normalize("meio-dia"), "meio dia");
    }

    #[test]
    fn typos_of_known_words_are_corrected_and_neighbours_are_not_merged() {
        assert_eq!(normalize("amanah de manha"), "amanha de manha");
        assert_eq!(normalize("qro agnedar"), "qro agendar");
        assert_eq!(normalize("cancelr"), "cancelar");
        assert_eq!(normalize("o segundo horario"), "o segundo horario");
        assert_eq!(normalize("no quarto dia"), "no quarto dia");
        assert_eq!(normalize("sesta feira"), "sexta feira");
    }
}
