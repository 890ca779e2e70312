//! `zae-limiter serve --grpc-listen`: Envoy's Rate Limit Service v3 with a real tonic client
//! over TCP on 127.0.0.1, on the embedded store.

use std::time::Duration;

mod serve_support;
use serve_support::{get_json, Server};

/// `Server::start`'s second stderr line when --grpc-listen is given: the gRPC address.
fn grpc_addr(s: &Server) -> String {
    let line = s
        .stderr
        .recv_timeout(Duration::from_secs(20))
        .expect("the gRPC address line");
    let addr = line
        .strip_prefix("serve: Envoy RLS (gRPC) on ")
        .unwrap_or_else(|| panic!("unexpected line: {line}"));
    format!("http://{addr}")
}

#[tokio::test]
async fn envoy_should_rate_limit_over_grpc() {
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
    use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
    use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
    use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;

    let dir = std::env::temp_dir().join(format!("zael-rls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("rls.yaml");
    std::fs::write(
        &config,
        "entity_key: api_key\nlimit: rpm\nlimits: [\"rpm:2/min\"]\n",
    )
    .unwrap();
    let s = Server::memory(&[
        "--grpc-listen",
        "127.0.0.1:0",
        "--rls-config",
        config.to_str().unwrap(),
    ]);
    let url = grpc_addr(&s);
    let mut client = RateLimitServiceClient::connect(url).await.unwrap();
    let request = |key: &str| RateLimitRequest {
        domain: "edge".into(),
        descriptors: vec![
            RateLimitDescriptor {
                entries: vec![Entry {
                    key: "api_key".into(),
                    value: key.into(),
                }],
                ..Default::default()
            },
            // no api_key entry: not limited
            RateLimitDescriptor {
                entries: vec![Entry {
                    key: "path".into(),
                    value: "/x".into(),
                }],
                ..Default::default()
            },
        ],
        hits_addend: 1,
    };
    let headers = |r: &envoy_types::pb::envoy::service::ratelimit::v3::RateLimitResponse| {
        r.response_headers_to_add
            .iter()
            .map(|h| (h.key.clone(), h.value.clone()))
            .collect::<Vec<_>>()
    };
    // the refill runs on the server's real clock: the wait shrinks by the time the
    // requests take (whole seconds, rounded up)
    let start = std::time::Instant::now();
    for left in [1u32, 0] {
        let r = client
            .should_rate_limit(request("k1"))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.overall_code, 1, "{r:?}"); // OK
        assert_eq!(r.statuses.len(), 2);
        let st = &r.statuses[0];
        assert_eq!((st.code, st.limit_remaining), (1, left));
        let limit = st.current_limit.as_ref().unwrap();
        assert_eq!(
            (limit.name.as_str(), limit.requests_per_unit, limit.unit),
            ("rpm", 2, 2)
        ); // MINUTE
        assert_eq!(r.statuses[1].code, 1);
        assert_eq!(r.statuses[1].current_limit, None);
        let waits: Vec<u64> = if left == 0 {
            serve_support::waits_since(start, 30)
        } else {
            vec![0]
        };
        let got = headers(&r);
        assert_eq!(
            got[0],
            (
                "ratelimit-policy".to_string(),
                "\"rpm\";q=2;w=60".to_string()
            )
        );
        assert!(
            got.len() == 2
                && waits.iter().any(|t| got[1]
                    == ("ratelimit".to_string(), format!("\"rpm\";r={left};t={t}"))),
            "{got:?}, expected a wait in {waits:?}"
        );
    }
    let r = client
        .should_rate_limit(request("k1"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.overall_code, 2, "{r:?}"); // OVER_LIMIT
    assert_eq!((r.statuses[0].code, r.statuses[0].limit_remaining), (2, 0));
    let reset = r.statuses[0].duration_until_reset.as_ref().unwrap();
    let waits = serve_support::waits_since(start, 30);
    assert!(
        waits
            .iter()
            .any(|t| *t as i64 == reset.seconds || *t as i64 == reset.seconds + 1),
        "{reset:?}, expected one of {waits:?}"
    );
    assert!(
        waits.iter().any(|t| headers(&r)
            == [
                ("retry-after".to_string(), t.to_string()),
                (
                    "ratelimit-policy".to_string(),
                    "\"rpm\";q=2;w=60".to_string()
                ),
                ("ratelimit".to_string(), format!("\"rpm\";r=0;t={t}")),
            ]),
        "{:?}, expected a wait in {waits:?}",
        headers(&r)
    );
    // another key, its own bucket; the domain is the resource
    let r = client
        .should_rate_limit(request("k2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.overall_code, 1);
    let c = reqwest::Client::new();
    let v = get_json(
        &c,
        s.url("/v1/available?entity=k1&resource=edge&limits=rpm:2/min"),
    )
    .await;
    assert_eq!(v["available"]["rpm"], 0);
    let _ = std::fs::remove_dir_all(&dir);
}
