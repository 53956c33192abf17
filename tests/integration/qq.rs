//! The official platform's pieces built so far, over real HTTP on loopback.

use std::time::{Duration, Instant};

use rhaibot::adapter::qq::token::{RENEW_BEFORE, Tokens};
use rhaibot::config::Secret;

use crate::support::qq::FakePlatform;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_fetched_once_shared_and_renewed_in_its_last_minute() {
    let fake = FakePlatform::start("10001", "s3cret", 7200).await;
    let tokens =
        std::sync::Arc::new(Tokens::new(crate::support::http_client(), &fake.url, "10001", Secret("s3cret".into())));
    let t0 = Instant::now();
    // Ten callers at once share one fetch.
    let gets: Vec<_> = (0..10)
        .map(|_| {
            let t = tokens.clone();
            tokio::spawn(async move { t.get_at(t0).await })
        })
        .collect();
    for g in gets {
        assert_eq!(g.await.unwrap().unwrap(), "token-1");
    }
    assert_eq!(fake.issued(), 1);
    assert_eq!(tokens.headers("token-1")[0], ("Authorization", "QQBot token-1".to_owned()));
    assert_eq!(tokens.headers("token-1")[1], ("X-Union-Appid", "10001".to_owned()));
    // Still fresh a minute and a second before expiry; renewed inside the last minute.
    let lifetime = Duration::from_secs(7200);
    assert_eq!(tokens.get_at(t0 + lifetime - RENEW_BEFORE - Duration::from_secs(1)).await.unwrap(), "token-1");
    assert_eq!(tokens.get_at(t0 + lifetime - Duration::from_secs(30)).await.unwrap(), "token-2");
    // A token the platform refused is dropped; the next call fetches another.
    tokens.invalidate().await;
    assert_eq!(tokens.get_at(t0 + lifetime).await.unwrap(), "token-3");
    assert_eq!(fake.issued(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_a_clear_error() {
    let fake = FakePlatform::start("10001", "s3cret", 7200).await;
    let tokens = Tokens::new(crate::support::http_client(), &fake.url, "10001", Secret("wrong".into()));
    let e = tokens.get().await.unwrap_err().to_string();
    assert!(e.contains("invalid appid or secret") && e.contains("check app_id and secret"), "{e}");
    assert!(rhaibot::adapter::qq::token::is_token_error(11244) && !rhaibot::adapter::qq::token::is_token_error(11245));
}
