//! The "minimal warp server" baseline: the least a server can do for the handler's routes.
//! POST answers 202 with a fixed JSON body and a Location header; GET answers a fixed 202
//! (GET / answers 200 "ok", like the handler's readiness probe). Listens on 127.0.0.1:$PORT.

use warp::http::{header, Response, StatusCode};
use warp::Filter;

const BODY: &str = r#"{"id":"00000000-0000-4000-8000-000000000000","status":"NotStarted","statusUrl":"http://127.0.0.1/api/RequestStatus/00000000-0000-4000-8000-000000000000"}"#;
const LOCATION: &str = "http://127.0.0.1/api/RequestStatus/00000000-0000-4000-8000-000000000000";

fn accepted() -> Response<String> {
    Response::builder()
        .status(StatusCode::ACCEPTED)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::LOCATION, LOCATION)
        .header(header::RETRY_AFTER, "1")
        .body(BODY.to_string())
        .unwrap()
}

#[tokio::main]
async fn main() {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(7072);
    let root = warp::get().and(warp::path::end()).map(|| {
        Response::builder()
            .status(200)
            .body("ok".to_string())
            .unwrap()
    });
    let post = warp::post()
        .and(warp::body::bytes())
        .map(|_body: bytes::Bytes| accepted());
    let get = warp::get().map(accepted);
    let routes = root.or(post).or(get);
    warp::serve(routes).run(([127, 0, 0, 1], port)).await;
}
