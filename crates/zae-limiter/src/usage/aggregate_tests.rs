use super::*;

const H: i64 = 3_600_000;
const T0: i64 = 1_764_633_600_000; // 2025-12-02T00:00:00Z

fn rec(
    kind: ChangeKind,
    seq: u128,
    t: i64,
    old: &[(&str, i128)],
    new: &[(&str, i128)],
) -> BucketRecord {
    let m = |v: &[(&str, i128)]| v.iter().map(|(k, n)| (k.to_string(), *n)).collect();
    BucketRecord {
        kind,
        namespace: "ns1".into(),
        entity_id: "key-1".into(),
        resource: "gpt-4".into(),
        shard: "0".into(),
        old_consumed: m(old),
        new_consumed: m(new),
        time_ms: t,
        seq: SeqNo::from_u128(seq),
    }
}

/// (window, start, deltas, events) of each update.
type Row = (Window, i64, Vec<(String, i128)>, u64);

fn summary(u: &[SnapshotUpdate]) -> Vec<Row> {
    u.iter()
        .map(|u| {
            (
                u.window,
                u.window_start_ms,
                u.deltas().into_iter().collect(),
                u.events(),
            )
        })
        .collect()
}

fn v(p: &[(&str, i128)]) -> Vec<(String, i128)> {
    p.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

#[test]
fn table_of_records_to_updates() {
    use ChangeKind::*;
    let cases: Vec<(&str, Vec<BucketRecord>, Vec<Row>)> = vec![
        (
            "an INSERT counts the first consumption",
            vec![rec(
                Insert,
                1,
                T0 + 5,
                &[],
                &[("rpm", 1000), ("tpm", 500_000)],
            )],
            vec![
                (Window::Hourly, T0, v(&[("rpm", 1000), ("tpm", 500_000)]), 1),
                (Window::Daily, T0, v(&[("rpm", 1000), ("tpm", 500_000)]), 1),
            ],
        ),
        (
            "acquire, adjustment and rollback net out",
            vec![
                rec(Insert, 1, T0, &[], &[("tpm", 500_000)]),
                rec(Modify, 2, T0 + 1, &[("tpm", 500_000)], &[("tpm", 800_000)]),
                rec(Modify, 3, T0 + 2, &[("tpm", 800_000)], &[("tpm", 0)]),
            ],
            vec![
                (Window::Hourly, T0, v(&[]), 3),
                (Window::Daily, T0, v(&[]), 3),
            ],
        ),
        (
            "windows come from each record's time",
            vec![
                rec(Modify, 7, T0 + H - 1, &[("rpm", 0)], &[("rpm", 1000)]),
                rec(Modify, 8, T0 + H, &[("rpm", 1000)], &[("rpm", 3000)]),
            ],
            vec![
                (Window::Hourly, T0, v(&[("rpm", 1000)]), 1),
                (Window::Hourly, T0 + H, v(&[("rpm", 2000)]), 1),
                (Window::Daily, T0, v(&[("rpm", 3000)]), 2),
            ],
        ),
        (
            "refusals (no delta), removals and duplicates add nothing",
            vec![
                rec(Modify, 4, T0, &[("rpm", 5)], &[("rpm", 5)]),
                rec(Remove, 5, T0, &[("rpm", 5)], &[]),
                rec(Modify, 6, T0, &[("rpm", 5)], &[("rpm", 6)]),
                rec(Modify, 6, T0, &[("rpm", 5)], &[("rpm", 6)]),
            ],
            vec![
                (Window::Hourly, T0, v(&[("rpm", 1)]), 1),
                (Window::Daily, T0, v(&[("rpm", 1)]), 1),
            ],
        ),
        (
            "a limit added later counts from zero",
            vec![rec(
                Modify,
                9,
                T0,
                &[("rpm", 5)],
                &[("rpm", 5), ("tpm", 70)],
            )],
            vec![
                (Window::Hourly, T0, v(&[("tpm", 70)]), 1),
                (Window::Daily, T0, v(&[("tpm", 70)]), 1),
            ],
        ),
    ];
    for (name, records, want) in cases {
        assert_eq!(summary(&aggregate(&records, &Window::ALL)), want, "{name}");
    }
}

#[test]
fn coalesces_per_bucket_item_and_keeps_sequence_order() {
    use ChangeKind::*;
    let mut other = rec(Modify, 3, T0, &[("rpm", 0)], &[("rpm", 1)]);
    other.shard = "1".into();
    let records = vec![
        rec(Modify, 20, T0, &[("rpm", 1)], &[("rpm", 2)]),
        rec(Modify, 10, T0, &[("rpm", 0)], &[("rpm", 1)]),
        other,
    ];
    let u = aggregate(&records, &[Window::Hourly]);
    assert_eq!(u.len(), 2);
    assert_eq!(u[0].shard, "0");
    assert_eq!(u[0].first_seq(), Some(&SeqNo::from_u128(10)));
    assert_eq!(u[0].last_seq(), Some(&SeqNo::from_u128(20)));
    assert_eq!(u[0].deltas(), BTreeMap::from([("rpm".to_string(), 2)]));
    // the part after an applied record
    let rest = u[0].after(&SeqNo::from_u128(10)).unwrap();
    assert_eq!((rest.events(), rest.deltas()["rpm"]), (1, 1));
    assert!(u[0].after(&SeqNo::from_u128(20)).is_none());
}

#[test]
fn sequence_numbers_compare_as_numbers() {
    let a = SeqNo::parse("9").unwrap();
    let b = SeqNo::parse("10").unwrap();
    let big = SeqNo::parse(&"9".repeat(40)).unwrap();
    assert!(a < b && b < big);
    assert_eq!(b.as_given(), "10");
    assert_eq!(a.padded().len(), 40);
    for bad in ["", "1x", &"1".repeat(41), "-1"] {
        assert!(SeqNo::parse(bad).is_none(), "{bad}");
    }
}

#[test]
fn parses_bucket_keys() {
    assert_eq!(
        parse_bucket_pk("abc/BUCKET#key-1#openai/gpt-4o#3"),
        Some(("abc", "key-1", "openai/gpt-4o", "3"))
    );
    for bad in [
        "abc/ENTITY#x",
        "abc/BUCKET#x#0",
        "BUCKET#a#b#0",
        "abc/BUCKET##r#0",
        "abc/BUCKET#a#r#",
    ] {
        assert_eq!(parse_bucket_pk(bad), None, "{bad}");
    }
}
