//! One entity's buckets packed into a single allocation.
//!
//! A [`BucketState`] holds its limits in a `BTreeMap`, whose first node has room for eleven
//! limits: over a kilobyte per bucket, 1.6 GB for a million per-user buckets. The embedded
//! store keeps instead, per entity, one byte string of variable-length integers (about
//! 30 bytes for a bucket of one limit), decodes a bucket when it is read and encodes it
//! again when it is written.
//!
//! Layout: the entity's eviction time (`scheduled`), then per bucket its resource, the
//! length of its body, and the body: the bucket time, the limit count, and per limit its
//! name, version, capacity, refill, period, level (relative to the bucket time) and consumed
//! counter. Integers are LEB128
//! varints (signed ones zigzag-encoded), strings a varint length and their UTF-8 bytes.

use std::collections::BTreeMap;
use std::ops::Range;

use crate::bucket::BucketParams;
use crate::store::{BucketState, LimitState};

fn put_u(out: &mut Vec<u8>, mut v: u128) {
    // most values fit in 64 bits: the cheaper loop
    if let Ok(mut w) = u64::try_from(v) {
        while w >= 0x80 {
            out.push((w & 0x7f) as u8 | 0x80);
            w >>= 7;
        }
        out.push(w as u8);
        return;
    }
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_i(out: &mut Vec<u8>, v: i128) {
    put_u(out, ((v << 1) ^ (v >> 127)) as u128);
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u(out, s.len() as u128);
    out.extend_from_slice(s.as_bytes());
}

/// Reads what the `put_*` functions wrote. The bytes always come from them: a malformed
/// record is a bug of this module, hence the panics.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], pos: usize) -> Self {
        Reader { buf, pos }
    }
    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }
    fn u(&mut self) -> u128 {
        // the first nine bytes (63 bits) in 64-bit arithmetic, the rest in 128
        let mut w = 0u64;
        let mut shift = 0;
        while shift < 63 {
            let b = self.buf[self.pos];
            self.pos += 1;
            w |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return u128::from(w);
            }
            shift += 7;
        }
        let mut v = u128::from(w);
        loop {
            let b = self.buf[self.pos];
            self.pos += 1;
            v |= u128::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return v;
            }
            shift += 7;
        }
    }
    fn i(&mut self) -> i128 {
        let u = self.u();
        ((u >> 1) as i128) ^ -((u & 1) as i128)
    }
    fn i64(&mut self) -> i64 {
        self.i() as i64
    }
    fn len(&mut self) -> usize {
        self.u() as usize
    }
    fn bytes(&mut self, n: usize) -> &'a [u8] {
        let b = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        b
    }
    fn str(&mut self) -> &'a str {
        let n = self.len();
        std::str::from_utf8(self.bytes(n)).expect("packed from a str")
    }
}

/// `t*A`, wrapping.
fn at(time_ms: i64, p: &BucketParams) -> i128 {
    i128::from(time_ms).wrapping_mul(p.refill)
}

fn encode_body(state: &BucketState, out: &mut Vec<u8>) {
    put_i(out, state.time_ms.into());
    put_u(out, state.limits.len() as u128);
    for (name, l) in &state.limits {
        put_str(out, name);
        put_i(out, l.version.into());
        put_i(out, l.params.capacity);
        put_i(out, l.params.refill);
        put_i(out, l.params.period);
        // the level relative to the bucket time (z + t*A: close to the token count, so a few
        // bytes instead of eight); wrapping, so any value round-trips
        put_i(out, l.level.wrapping_add(at(state.time_ms, &l.params)));
        put_i(out, l.consumed);
    }
}

fn decode_body(body: &[u8]) -> BucketState {
    let mut r = Reader::new(body, 0);
    let time_ms = r.i64();
    let n = r.len();
    let mut limits = BTreeMap::new();
    for _ in 0..n {
        let name = r.str().to_string();
        let version = r.i64();
        let params = BucketParams {
            capacity: r.i(),
            refill: r.i(),
            period: r.i(),
        };
        let level = r.i().wrapping_sub(at(time_ms, &params));
        let consumed = r.i();
        limits.insert(
            name,
            LimitState {
                params,
                version,
                level,
                consumed,
            },
        );
    }
    BucketState { limits, time_ms }
}

/// One bucket's place in a record.
struct Entry<'a> {
    resource: &'a str,
    /// The whole entry (resource, length, body).
    whole: Range<usize>,
    body: Range<usize>,
}

/// The buckets of one entity, with the time its eviction is scheduled for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record(Box<[u8]>);

impl Record {
    /// A record without buckets.
    pub(super) fn new(scheduled: i64) -> Self {
        let mut out = Vec::with_capacity(48);
        put_i(&mut out, scheduled.into());
        Record(out.into_boxed_slice())
    }

    fn header_len(&self) -> usize {
        let mut r = Reader::new(&self.0, 0);
        r.u();
        r.pos
    }

    /// When the store looks at this entity's buckets next, to drop those full again.
    pub(super) fn scheduled(&self) -> i64 {
        Reader::new(&self.0, 0).i64()
    }

    /// Reschedule.
    pub(super) fn set_scheduled(&mut self, at: i64) {
        let mut out = Vec::with_capacity(self.0.len() + 4);
        put_i(&mut out, at.into());
        out.extend_from_slice(&self.0[self.header_len()..]);
        self.0 = out.into_boxed_slice();
    }

    fn entries(&self) -> impl Iterator<Item = Entry<'_>> {
        let mut r = Reader::new(&self.0, self.header_len());
        std::iter::from_fn(move || {
            if r.done() {
                return None;
            }
            let start = r.pos;
            let resource = r.str();
            let n = r.len();
            let body = r.pos..r.pos + n;
            r.pos += n;
            Some(Entry {
                resource,
                whole: start..r.pos,
                body,
            })
        })
    }

    /// How many buckets the record holds.
    pub(super) fn len(&self) -> usize {
        self.entries().count()
    }

    /// True when the record holds no bucket.
    pub(super) fn is_empty(&self) -> bool {
        self.0.len() == self.header_len()
    }

    /// The bucket of `resource`.
    pub(super) fn get(&self, resource: &str) -> Option<BucketState> {
        self.entries()
            .find(|e| e.resource == resource)
            .map(|e| decode_body(&self.0[e.body]))
    }

    /// Every bucket, by resource.
    #[cfg(test)]
    pub(super) fn buckets(&self) -> impl Iterator<Item = (&str, BucketState)> {
        self.entries()
            .map(|e| (e.resource, decode_body(&self.0[e.body])))
    }

    /// Store `state` as the bucket of `resource`; true when the bucket is new.
    #[cfg(test)]
    pub(super) fn put(&mut self, resource: &str, state: &BucketState) -> bool {
        self.put_with(resource, state, &mut Vec::new())
    }

    /// [`put`](Self::put), encoding in `scratch` (a buffer kept between calls, so that
    /// rewriting a bucket in place allocates nothing).
    pub(super) fn put_with(
        &mut self,
        resource: &str,
        state: &BucketState,
        scratch: &mut Vec<u8>,
    ) -> bool {
        scratch.clear();
        encode_body(state, scratch);
        let body: &[u8] = scratch;
        let found = self
            .entries()
            .find(|e| e.resource == resource)
            .map(|e| (e.whole, e.body));
        if let Some((_, at)) = found.as_ref().filter(|(_, b)| b.len() == body.len()) {
            // same length (the usual case: new levels): overwrite in place
            self.0[at.clone()].copy_from_slice(body);
            return false;
        }
        let mut out = Vec::with_capacity(self.0.len() + body.len() + resource.len() + 4);
        match &found {
            Some((whole, _)) => {
                out.extend_from_slice(&self.0[..whole.start]);
                out.extend_from_slice(&self.0[whole.end..]);
            }
            None => out.extend_from_slice(&self.0),
        }
        put_str(&mut out, resource);
        put_u(&mut out, body.len() as u128);
        out.extend_from_slice(body);
        self.0 = out.into_boxed_slice();
        found.is_none()
    }

    /// Keep only the buckets for which `keep` holds; returns how many were dropped.
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&str, &BucketState) -> bool) -> usize {
        let header = self.header_len();
        let mut out = Vec::with_capacity(self.0.len());
        out.extend_from_slice(&self.0[..header]);
        let mut dropped = 0;
        for e in self.entries() {
            if keep(e.resource, &decode_body(&self.0[e.body.clone()])) {
                out.extend_from_slice(&self.0[e.whole]);
            } else {
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.0 = out.into_boxed_slice();
        }
        dropped
    }

    /// Bytes held (diagnostics).
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const T0: i64 = 1_767_225_600_000;

    fn bucket(limits: &[(&str, i128)], time_ms: i64) -> BucketState {
        BucketState {
            limits: limits
                .iter()
                .map(|(n, level)| {
                    (
                        n.to_string(),
                        LimitState {
                            params: BucketParams::new(10, 10, 60_000),
                            version: 3,
                            level: *level,
                            consumed: 1_000,
                        },
                    )
                })
                .collect(),
            time_ms,
        }
    }

    #[test]
    fn buckets_by_resource() {
        let mut r = Record::new(T0);
        assert!(r.is_empty());
        assert_eq!(r.get("api"), None);
        let a = bucket(&[("rpm", 1)], T0);
        let b = bucket(&[("rpm", 2), ("tpm", -5)], T0 + 1);
        assert!(r.put("api", &a));
        assert!(r.put("gpt-4", &b));
        assert_eq!(
            (r.len(), r.get("api"), r.get("gpt-4")),
            (2, Some(a), Some(b.clone()))
        );
        // same length: in place; other length: moved to the end
        let a2 = bucket(&[("rpm", 2)], T0);
        assert!(!r.put("api", &a2));
        let a3 = bucket(&[("rpm", i128::MIN)], T0);
        assert!(!r.put("api", &a3));
        assert_eq!(
            (r.len(), r.get("api"), r.get("gpt-4")),
            (2, Some(a3), Some(b.clone()))
        );
        r.set_scheduled(i64::MIN);
        assert_eq!(r.scheduled(), i64::MIN);
        assert_eq!(r.retain(|res, _| res == "gpt-4"), 1);
        assert_eq!(r.buckets().collect::<Vec<_>>(), vec![("gpt-4", b)]);
        assert_eq!(r.retain(|_, _| false), 1);
        assert!(r.is_empty());
        assert_eq!(r.scheduled(), i64::MIN);
    }

    #[test]
    fn a_per_user_bucket_takes_a_few_dozen_bytes() {
        let mut r = Record::new(T0 + 6_000);
        let p = BucketParams::new(10, 10, 60_000);
        let mut s = BucketState::default();
        s.limits.insert(
            "rpm".into(),
            LimitState {
                params: p,
                version: 0,
                level: p.consume(None, 1_000, T0).unwrap(),
                consumed: 1_000,
            },
        );
        s.time_ms = T0;
        r.put("api", &s);
        // 40 bytes and less take a 48-byte malloc chunk
        assert!(r.bytes() <= 40, "{}", r.bytes());
    }

    fn limit_state() -> impl Strategy<Value = LimitState> {
        (
            any::<i128>(),
            any::<i128>(),
            any::<i128>(),
            any::<i64>(),
            any::<i128>(),
            any::<i128>(),
        )
            .prop_map(
                |(capacity, refill, period, version, level, consumed)| LimitState {
                    params: BucketParams {
                        capacity,
                        refill,
                        period,
                    },
                    version,
                    level,
                    consumed,
                },
            )
    }

    fn bucket_state() -> impl Strategy<Value = BucketState> {
        (
            prop::collection::btree_map("[a-zé_.-]{1,8}", limit_state(), 0..5),
            any::<i64>(),
        )
            .prop_map(|(limits, time_ms)| BucketState { limits, time_ms })
    }

    /// Any `u128`, spread evenly over bit lengths (so encodings of every length, from one
    /// byte to nineteen, are exercised).
    fn any_width() -> impl Strategy<Value = u128> {
        (0u32..=128, any::<u128>()).prop_map(|(bits, v)| match bits {
            0 => 0,
            128 => v,
            b => (v & ((1u128 << b) - 1)) | (1u128 << (b - 1)),
        })
    }

    #[test]
    fn varints_are_leb128() {
        for (v, bytes) in [
            (0u128, vec![0u8]),
            (1, vec![1]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (
                (1 << 56) - 1,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
            ),
            (
                1 << 56,
                vec![0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            ),
        ] {
            let mut out = Vec::new();
            put_u(&mut out, v);
            assert_eq!(out, bytes, "{v}");
            // alone (fewer than eight bytes to read) and followed by more bytes
            assert_eq!(Reader::new(&out, 0).u(), v);
            out.extend_from_slice(&[0xff; 9]);
            let mut r = Reader::new(&out, 0);
            assert_eq!((r.u(), r.pos), (v, bytes.len()));
        }
    }

    proptest! {
        #[test]
        fn varints_round_trip(values in prop::collection::vec(any_width(), 0..20)) {
            let mut out = Vec::new();
            for v in &values {
                put_u(&mut out, *v);
            }
            let mut r = Reader::new(&out, 0);
            for v in &values {
                prop_assert_eq!(r.u(), *v);
            }
            prop_assert!(r.done());
        }

        #[test]
        fn what_is_put_is_read_back(
            scheduled in any::<i64>(),
            writes in prop::collection::vec((0usize..4, bucket_state()), 0..12),
        ) {
            let resources = ["api", "gpt-4", "ü/x", "r"];
            let mut r = Record::new(scheduled);
            let mut model: BTreeMap<&str, BucketState> = BTreeMap::new();
            for (i, s) in writes {
                let new = r.put(resources[i], &s);
                prop_assert_eq!(new, model.insert(resources[i], s).is_none());
            }
            prop_assert_eq!(r.scheduled(), scheduled);
            prop_assert_eq!(r.len(), model.len());
            for res in resources {
                prop_assert_eq!(r.get(res), model.get(res).cloned());
            }
            let mut all: Vec<(&str, BucketState)> = r.buckets().collect();
            all.sort_by(|a, b| a.0.cmp(b.0));
            prop_assert_eq!(all, model.into_iter().collect::<Vec<_>>());
        }
    }
}
