//! Malformed input: absurd counts, every truncation of every valid message,
//! random and mutated bytes. None may panic; each must be an error that
//! points inside the buffer.

use super::*;

#[test]
fn absurd_counts_and_lengths_are_rejected_before_allocating() {
    let cases = [
        // 65535 tuple columns in 3 bytes.
        (
            W::tag(b'I').u32(1).u8(b'N').u16(u16::MAX).raw(b"nnn"),
            "tuple column count",
            6,
        ),
        // 65535 relation columns, each needing at least 10 bytes.
        (
            W::tag(b'R')
                .u32(1)
                .cstr("s")
                .cstr("t")
                .u8(b'd')
                .u16(u16::MAX)
                .raw(&[0; 100]),
            "column count",
            10,
        ),
        (W::tag(b'T').i32(i32::MAX).u8(0).u32(1), "relation count", 1),
        (W::tag(b'T').i32(-1).u8(0), "relation count", 1),
        (
            W::tag(b'I').u32(1).u8(b'N').u16(1).u8(b't').i32(-1),
            "text column value",
            9,
        ),
        (
            W::tag(b'I')
                .u32(1)
                .u8(b'N')
                .u16(1)
                .u8(b'b')
                .i32(5)
                .raw(b"abcd"),
            "binary column value",
            9,
        ),
        (
            W::tag(b'M').u8(0).u64(1).cstr("p").i32(i32::MAX).raw(b"x"),
            "message content",
            12,
        ),
    ];
    for (m, what, offset) in cases {
        match dec(&m, false) {
            Err(DecodeError::InvalidLength {
                what: w, offset: o, ..
            }) => {
                assert_eq!((w, o), (what, offset), "{:?}", m.0)
            }
            other => panic!("{what}: {other:?}"),
        }
    }
}

/// Every valid message in both forms, for the truncation and mutation tests.
fn valid_messages() -> Vec<(W, bool)> {
    let mut all = vec![
        (W::tag(b'B').u64(LSN).i64(PG_TS).u32(758), false),
        (W::tag(b'C').u8(0).u64(LSN).u64(LSN).i64(PG_TS), false),
        (W::tag(b'O').u64(LSN).cstr("node_a"), false),
        (W::tag(b'S').u32(907).u8(1), false),
        (
            W::tag(b'c').u32(907).u8(0).u64(LSN).u64(LSN).i64(PG_TS),
            false,
        ),
        // The v4 abort form is left out: its v2 prefix is itself valid.
        (W::tag(b'A').u32(907).u32(908), false),
    ];
    for xid in [None, Some(909)] {
        let s = xid.is_some();
        all.push((relation_msg(xid), s));
        all.push((
            W::tag(b'Y')
                .xid(xid)
                .u32(16_400)
                .cstr("public")
                .cstr("mood"),
            s,
        ));
        all.push((sample_tuple(W::tag(b'I').xid(xid).u32(1).u8(b'N')), s));
        all.push((
            sample_tuple(key_tuple(W::tag(b'U').xid(xid).u32(1).u8(b'K')).u8(b'N')),
            s,
        ));
        all.push((sample_tuple(W::tag(b'U').xid(xid).u32(1).u8(b'N')), s));
        all.push((sample_tuple(W::tag(b'D').xid(xid).u32(1).u8(b'O')), s));
        all.push((W::tag(b'T').xid(xid).i32(2).u8(1).u32(1).u32(2), s));
        all.push((
            W::tag(b'M')
                .xid(xid)
                .u8(1)
                .u64(LSN)
                .cstr("p")
                .i32(2)
                .raw(b"hi"),
            s,
        ));
    }
    all
}

#[test]
fn every_truncation_of_a_valid_message_is_an_error() {
    for (m, in_stream) in valid_messages() {
        assert!(dec(&m, in_stream).is_ok(), "{:?}", m.0);
        for len in 0..m.0.len() {
            match decode_slice(&m.0[..len], in_stream) {
                Err(e) => assert!(e.offset() <= len, "{e} for {:?}", &m.0[..len]),
                Ok(msg) => panic!("prefix {:?} decoded as {msg:?}", &m.0[..len]),
            }
        }
    }
}

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn random_bytes_never_panic() {
    let tags = b"BCORYIUDTMSEcA";
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut ok = 0;
    for i in 0..5000 {
        let len = rng.below(48) as usize;
        let mut buf: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        // Mostly valid tags, so that the decoding gets past the first byte.
        if let Some(first) = buf.first_mut()
            && i % 4 != 0
        {
            *first = tags[rng.below(tags.len() as u64) as usize];
        }
        match decode_slice(&buf, rng.below(2) == 1) {
            Ok(_) => ok += 1,
            Err(e) => assert!(e.offset() <= buf.len(), "{e} for {buf:?}"),
        }
    }
    // Some short messages (Stream Stop, Stream Abort) are valid at random.
    assert!(ok > 0);
}

#[test]
fn mutated_valid_messages_never_panic() {
    let mut rng = Rng(42);
    let messages = valid_messages();
    for _ in 0..5000 {
        let (m, in_stream) = &messages[rng.below(messages.len() as u64) as usize];
        let mut buf = m.0.clone();
        for _ in 0..=rng.below(3) {
            let at = rng.below(buf.len() as u64) as usize;
            buf[at] = rng.next() as u8;
        }
        if let Err(e) = decode_slice(&buf, *in_stream) {
            assert!(e.offset() <= buf.len(), "{e} for {buf:?}");
        }
    }
}

#[test]
fn errors_say_what_and_where() {
    let err = decode_slice(&[b'B', 0, 0], false)
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        err.as_deref(),
        Some("truncated message: final LSN at offset 1 needs 8 bytes, 2 left")
    );
}
