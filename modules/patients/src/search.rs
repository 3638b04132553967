//! Name search over `patient_search_terms`: one row per word of a patient's name and
//! nickname (folded to lower case without accents), so that every word of the query must
//! start a word of the name. Only range comparisons on `term` are used: row-level security
//! lets the index serve them, where it would not serve `LIKE`.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{Bool, Nullable, Text};
use diesel_async::RunQueryDsl;
use harmony_core::db::Conn;
use harmony_core::error::Error;
use uuid::Uuid;

use crate::api::ListCursor;
use crate::records::PatientRow;
use crate::schema::{patient_search_terms, patients};

/// The end of the range of terms that start with `word` (in byte order).
fn prefix_end(word: &str) -> String {
    format!("{word}{}", char::MAX)
}

/// The patients with a name or nickname word starting with `word`.
pub(crate) fn term_matches(
    word: &str,
) -> diesel::dsl::Select<
    diesel::dsl::Filter<
        diesel::dsl::Filter<
            patient_search_terms::table,
            diesel::dsl::GtEq<patient_search_terms::term, String>,
        >,
        diesel::dsl::Lt<patient_search_terms::term, String>,
    >,
    patient_search_terms::patient_id,
> {
    patient_search_terms::table
        .filter(patient_search_terms::term.ge(word.to_owned()))
        .filter(patient_search_terms::term.lt(prefix_end(word)))
        .select(patient_search_terms::patient_id)
}

#[derive(QueryableByName)]
struct Hit {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    patient_id: Uuid,
}

#[derive(QueryableByName)]
struct TermHit {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    patient_id: Uuid,
    /// How many distinct words the prefix starts (counting stops past [`MAX_TERMS`]).
    #[diesel(sql_type = Nullable<diesel::sql_types::Integer>)]
    terms: Option<i32>,
}

/// A page of a name search. Read-only: runs outside a transaction.
pub(crate) async fn search_by_name(
    conn: &Conn,
    words: &[String],
    status: &str,
    sort: &str,
    after: Option<&ListCursor>,
    limit: i64,
) -> Result<Vec<PatientRow>, Error> {
    let mut words: Vec<&str> = words.iter().map(String::as_str).collect();
    words.sort_by_key(|w| std::cmp::Reverse(w.len()));
    let active = match status {
        "active" => Some(true),
        "archived" => Some(false),
        _ => None,
    };
    let search = NameSearch {
        words: &words,
        active,
        desc: sort.starts_with('-'),
        after,
    };
    // A patient appears twice only when two words of their name start with the same
    // prefix; reading twice the page and dropping repeats avoids sorting every match for
    // DISTINCT. If repeats ate into the page, ask again with DISTINCT.
    let cap = 2 * (limit + 1);
    let by_word = if words.len() == 1 {
        search.page_word_by_word(conn, cap).await?
    } else {
        None
    };
    let mut ids = match by_word {
        Some(ids) => ids,
        None => search.page(conn, false, cap).await?,
    };
    let fetched = ids.len() as i64;
    ids.dedup();
    if fetched == cap && (ids.len() as i64) < limit + 1 {
        ids = search.page(conn, true, limit + 1).await?;
    }
    ids.truncate((limit + 1) as usize);
    let mut c = conn;
    let mut rows: Vec<PatientRow> = patients::table
        .filter(patients::id.eq_any(&ids))
        .select(PatientRow::as_select())
        .load(&mut c)
        .await?;
    rows.sort_by_key(|r| ids.iter().position(|id| *id == r.id));
    Ok(rows)
}

/// The most distinct words a one-word prefix may start for the word-by-word read; past
/// it (a one-letter prefix, say) one scan of the whole range costs less.
const MAX_TERMS: i32 = 32;

struct NameSearch<'a> {
    words: &'a [&'a str],
    active: Option<bool>,
    desc: bool,
    after: Option<&'a ListCursor>,
}

impl NameSearch<'_> {
    /// The ids of up to `cap` matches in page order, from one scan of the range of the
    /// longest word, the other words checked per match. The planner sees the words and
    /// starts from the rarest when that pays.
    async fn page(&self, conn: &Conn, distinct: bool, cap: i64) -> Result<Vec<Uuid>, Error> {
        let mut sql = format!(
            "SELECT {} t.sort_key, t.patient_id FROM patient_search_terms t \
             WHERE t.term >= $1 AND t.term < $2 AND ($3::boolean IS NULL OR t.active = $3)",
            if distinct { "DISTINCT" } else { "" }
        );
        let mut next = 4;
        for _ in &self.words[1..] {
            sql.push_str(&format!(
                " AND EXISTS (SELECT 1 FROM patient_search_terms o WHERE o.patient_id = t.patient_id \
                   AND o.term >= ${} AND o.term < ${})",
                next,
                next + 1
            ));
            next += 2;
        }
        if self.after.is_some() {
            let op = if self.desc { "<" } else { ">" };
            sql.push_str(&format!(
                " AND (t.sort_key, t.patient_id) {op} (${}, ${})",
                next,
                next + 1
            ));
            next += 2;
        }
        let direction = if self.desc { "DESC" } else { "ASC" };
        sql.push_str(&format!(
            " ORDER BY t.sort_key {direction}, t.patient_id {direction} LIMIT ${next}"
        ));

        let mut query = diesel::sql_query(sql)
            .into_boxed()
            .bind::<Text, _>(self.words[0].to_owned())
            .bind::<Text, _>(prefix_end(self.words[0]))
            .bind::<Nullable<Bool>, _>(self.active);
        for word in &self.words[1..] {
            query = query
                .bind::<Text, _>((*word).to_owned())
                .bind::<Text, _>(prefix_end(word));
        }
        if let Some(cursor) = self.after {
            query = query
                .bind::<Text, _>(cursor.name.clone().unwrap_or_default())
                .bind::<diesel::sql_types::Uuid, _>(cursor.id);
        }
        let mut c = conn;
        let hits: Vec<Hit> = query
            .bind::<diesel::sql_types::BigInt, _>(cap)
            .load(&mut c)
            .await?;
        Ok(hits.into_iter().map(|h| h.patient_id).collect())
    }

    /// The ids of up to `cap` matches of a one-word search in page order, read word by
    /// word: the distinct words the prefix starts, then for each the first `cap` entries
    /// in page order, merged. A common surname costs a page, not every patient who has
    /// it. `None` when the prefix starts more than [`MAX_TERMS`] words, or nothing was
    /// found (which may also mean that).
    async fn page_word_by_word(&self, conn: &Conn, cap: i64) -> Result<Option<Vec<Uuid>>, Error> {
        let word = self.words[0];
        let to = prefix_end(word);
        let after = match self.after {
            Some(c) => (c.name.clone().unwrap_or_default(), c.id),
            // Before every entry (or after every one, newest first).
            None if self.desc => (char::MAX.to_string(), Uuid::max()),
            None => (String::new(), Uuid::nil()),
        };
        let query = WordByWord {
            from: word,
            to: &to,
            active: self.active,
            desc: self.desc,
            after: (&after.0, after.1),
            cap,
        };
        let mut c = conn;
        let hits: Vec<TermHit> = query.load(&mut c).await?;
        let complete = hits
            .as_slice()
            .first()
            .is_some_and(|h| h.terms.is_some_and(|n| n <= MAX_TERMS));
        Ok(complete.then(|| hits.into_iter().map(|h| h.patient_id).collect()))
    }
}

/// The word-by-word page query. Its text depends only on the sort direction, so each
/// connection prepares it once and PostgreSQL can keep a generic plan.
struct WordByWord<'a> {
    from: &'a str,
    to: &'a str,
    active: Option<bool>,
    desc: bool,
    after: (&'a str, Uuid),
    cap: i64,
}

impl QueryId for WordByWord<'_> {
    type QueryId = ();
    // Two texts (one per direction): the statement cache keys them by text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for WordByWord<'_> {
    // Rows are read by column name, as from `sql_query`.
    type SqlType = diesel::sql_types::Untyped;
}

impl QueryFragment<Pg> for WordByWord<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Integer, Uuid as SqlUuid};
        let (op, direction) = if self.desc {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        // The distinct words in [from, to), one index probe each, one past the limit.
        out.push_sql(
            "WITH RECURSIVE terms(term, n) AS (\
             SELECT min(term), 1 FROM patient_search_terms WHERE term >= ",
        );
        out.push_bind_param::<Text, _>(self.from)?;
        out.push_sql(" AND term < ");
        out.push_bind_param::<Text, _>(self.to)?;
        out.push_sql(
            " UNION ALL SELECT (SELECT min(s.term) FROM patient_search_terms s \
             WHERE s.term > terms.term AND s.term < ",
        );
        out.push_bind_param::<Text, _>(self.to)?;
        out.push_sql("), n + 1 FROM terms WHERE terms.term IS NOT NULL AND n <= ");
        out.push_bind_param::<Integer, _>(&MAX_TERMS)?;
        out.push_sql(
            ") SELECT x.patient_id, (SELECT max(n) FROM terms WHERE term IS NOT NULL) AS terms \
             FROM terms CROSS JOIN LATERAL (\
             SELECT t.sort_key, t.patient_id FROM patient_search_terms t \
             WHERE t.term = terms.term AND (",
        );
        out.push_bind_param::<Nullable<Bool>, _>(&self.active)?;
        out.push_sql("::boolean IS NULL OR t.active = ");
        out.push_bind_param::<Nullable<Bool>, _>(&self.active)?;
        out.push_sql(&format!(") AND (t.sort_key, t.patient_id) {op} ("));
        out.push_bind_param::<Text, _>(self.after.0)?;
        out.push_sql(", ");
        out.push_bind_param::<SqlUuid, _>(&self.after.1)?;
        out.push_sql(&format!(
            ") ORDER BY t.sort_key {direction}, t.patient_id {direction} LIMIT "
        ));
        out.push_bind_param::<BigInt, _>(&self.cap)?;
        out.push_sql(&format!(
            ") x WHERE terms.term IS NOT NULL \
             ORDER BY x.sort_key {direction}, x.patient_id {direction} LIMIT "
        ));
        out.push_bind_param::<BigInt, _>(&self.cap)?;
        Ok(())
    }
}
