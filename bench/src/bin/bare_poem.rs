//! The baseline: poem's hello world, with no middleware at all.

use poem::listener::TcpListener;
use poem::{Route, Server, get, handler};

#[handler]
fn hello() -> &'static str {
    "hello"
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let bind = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    Server::new(TcpListener::bind(bind))
        .run(Route::new().at("/hello", get(hello)))
        .await
}
