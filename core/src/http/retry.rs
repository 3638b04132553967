//! Running a request again when PostgreSQL dropped its connection before the request
//! changed anything (a restarted server, a terminated backend, a failover): the client
//! gets the answer of the second attempt instead of a 503.
//!
//! Only requests whose body is small enough to keep (or that have none) are repeated, at
//! most twice, and only when [`Attempt::run`] says the attempt committed nothing and did
//! nothing outside the database.

use std::time::Duration;

use poem::http::{Method, StatusCode};
use poem::web::{LocalAddr, RemoteAddr};
use poem::{Body, Endpoint, Request, RequestParts, Response};

use crate::db::Attempt;

/// Attempts after the first.
const REPEATS: u32 = 2;

/// The head of a request, kept to build it again.
struct Head {
    method: Method,
    uri: poem::http::Uri,
    version: poem::http::Version,
    headers: poem::http::HeaderMap,
    extensions: poem::http::Extensions,
    local: LocalAddr,
    remote: RemoteAddr,
    scheme: poem::http::uri::Scheme,
}

impl Head {
    fn of(req: &Request) -> Self {
        Head {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
            extensions: req.extensions().clone(),
            local: req.local_addr().clone(),
            remote: req.remote_addr().clone(),
            scheme: req.scheme().clone(),
        }
    }

    fn request(&self, body: bytes::Bytes) -> Request {
        let mut parts = poem::http::Request::new(()).into_parts().0;
        parts.method = self.method.clone();
        parts.uri = self.uri.clone();
        parts.version = self.version;
        parts.headers = self.headers.clone();
        parts.extensions = self.extensions.clone();
        let parts = RequestParts::from((
            parts,
            self.local.clone(),
            self.remote.clone(),
            self.scheme.clone(),
        ));
        Request::from_parts(parts, Body::from(body))
    }
}

/// Serves `req` through `next`, again if its database connection was lost before it did
/// anything. `keepable` says whether its body may be read into memory first.
pub async fn serve<E: Endpoint>(next: &E, mut req: Request, keepable: bool) -> Response {
    let kept = if keepable {
        let head = Head::of(&req);
        match req.take_body().into_bytes().await {
            Ok(body) => {
                req.set_body(Body::from(body.clone()));
                Some((head, body))
            }
            // The client went away or sent a broken body: let the endpoint answer as usual.
            Err(_) => None,
        }
    } else {
        None
    };
    // One place awaits the endpoint, so that this future holds one of its futures only.
    let mut attempt = 0;
    let mut current = req;
    loop {
        let (response, repeatable) = Attempt::run(next.get_response(current)).await;
        let Some((head, body)) = &kept else {
            return response;
        };
        if !(repeatable
            && attempt < REPEATS
            && response.status() == StatusCode::SERVICE_UNAVAILABLE)
        {
            return response;
        }
        attempt += 1;
        tracing::info!(
            attempt,
            "request repeated: its database connection was lost"
        );
        tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
        current = head.request(body.clone());
    }
}
