//! Codec tests: every message round-trips in both formats with the same meaning, the documented
//! JSON examples decode, and arbitrary bytes never panic.

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::{Limits, Operation, RejectCode, SequencedOperation, ServerError};

const LIMIT: usize = 1 << 20;

fn client_messages() -> Vec<ClientMessage> {
    vec![
        ClientMessage::Hello {
            versions: vec![1],
            client_id: Some("c1".into()),
        },
        ClientMessage::Hello {
            versions: vec![],
            client_id: None,
        },
        ClientMessage::Join {
            space_id: "s".into(),
            since: Some(42),
        },
        ClientMessage::Join {
            space_id: "s".into(),
            since: None,
        },
        ClientMessage::Leave {
            space_id: "s".into(),
        },
        ClientMessage::Submit {
            space_id: "s".into(),
            ops: vec![
                Operation::new(
                    "createCard",
                    json!({"operationId": "o1", "id": "c", "x": 1.5, "y": -2, "name": "é", "extra": [1, {"a": null}]}),
                ),
                Operation::new("removeCard", json!([{"id": "a"}])),
            ],
        },
        ClientMessage::Presence {
            space_id: "s".into(),
            data: json!({"cursor": {"x": 1, "y": 2}}),
        },
        ClientMessage::ReadLog {
            space_id: "s".into(),
            after: 1000,
            limit: Some(500),
        },
        ClientMessage::ReadLog {
            space_id: "s".into(),
            after: 0,
            limit: None,
        },
    ]
}

fn server_messages() -> Vec<ServerMessage> {
    vec![
        ServerMessage::Welcome {
            version: 1,
            server: "spacesync 0.1.0".into(),
            client_id: "c1".into(),
            limits: Limits {
                max_message_bytes: 1 << 20,
                max_ops_per_batch: 500,
                hold_timeout_ms: 5000,
            },
        },
        ServerMessage::Joined {
            space_id: "s".into(),
            seq: 3,
            snapshot: Some(json!({"id": "s", "cards": []})),
            ops: vec![],
        },
        ServerMessage::Joined {
            space_id: "s".into(),
            seq: 3,
            snapshot: None,
            ops: vec![SequencedOperation {
                seq: 3,
                op: Operation::new("updateCard", json!({"operationId": "o", "id": "c"})),
            }],
        },
        ServerMessage::Left {
            space_id: "s".into(),
        },
        ServerMessage::Ack {
            space_id: "s".into(),
            operation_id: "o".into(),
            seq: u64::MAX,
            duplicate: true,
        },
        ServerMessage::Held {
            space_id: "s".into(),
            operation_id: "o".into(),
            waiting_for: vec!["a".into(), "b".into()],
        },
        ServerMessage::Rejected {
            space_id: "s".into(),
            operation_id: "o".into(),
            code: RejectCode::DependencyTimeout,
            permanent: true,
            message: "waited for a, b".into(),
        },
        ServerMessage::Broadcast {
            space_id: "s".into(),
            seq: 9,
            op: Operation::new("updateCard", json!({"operationId": "o", "id": "c", "x": 3})),
        },
        ServerMessage::Presence {
            space_id: "s".into(),
            client_id: "c2".into(),
            data: json!({"cursor": [1, 2]}),
        },
        ServerMessage::Error {
            code: ServerError::NotJoined,
            message: "join first".into(),
        },
        ServerMessage::Log {
            space_id: "s".into(),
            head: 7,
            ops: vec![SequencedOperation {
                seq: 6,
                op: Operation::new("updateCard", json!({"operationId": "o", "id": "c"})),
            }],
        },
        ServerMessage::Log {
            space_id: "s".into(),
            head: 0,
            ops: vec![],
        },
    ]
}

#[test]
fn every_message_round_trips_in_both_formats() {
    for format in [Format::MessagePack, Format::Json] {
        for message in client_messages() {
            let bytes = format.encode(&message).expect("encodes");
            let decoded = format.decode_client(&bytes, LIMIT).expect("decodes");
            assert_eq!(decoded, message, "{format:?}");
        }
        for message in server_messages() {
            let bytes = format.encode(&message).expect("encodes");
            let decoded = format.decode_server(&bytes, LIMIT).expect("decodes");
            assert_eq!(decoded, message, "{format:?}");
        }
    }
}

#[test]
fn the_direct_paths_for_submit_and_ack_agree_with_the_general_one() {
    for format in [Format::MessagePack, Format::Json] {
        for message in client_messages() {
            let bytes = format.encode(&message).expect("encodes");
            let general: ClientMessage = format.decode(&bytes, LIMIT).expect("decodes");
            assert_eq!(format.decode_client(&bytes, LIMIT).ok(), Some(general));
        }
        for message in server_messages() {
            let bytes = format.encode(&message).expect("encodes");
            let general: ServerMessage = format.decode(&bytes, LIMIT).expect("decodes");
            assert_eq!(format.decode_server(&bytes, LIMIT).ok(), Some(general));
        }
    }
    // Field order does not matter, and a bad submit gets the general path's error.
    let reordered = br#"{"ops":[],"spaceId":"s","type":"submit"}"#;
    assert_eq!(
        Format::Json.decode_client(reordered, LIMIT).ok(),
        Some(ClientMessage::Submit {
            space_id: "s".into(),
            ops: Vec::new()
        })
    );
    let unknown_field = br#"{"type":"submit","spaceId":"s","ops":[],"extra":1}"#;
    let direct = Format::Json
        .decode_client(unknown_field, LIMIT)
        .expect_err("refused");
    let general = Format::Json
        .decode::<ClientMessage>(unknown_field, LIMIT)
        .expect_err("refused");
    assert_eq!(direct.to_string(), general.to_string());
    let ack_missing_seq = br#"{"type":"ack","spaceId":"s","operationId":"o"}"#;
    assert!(Format::Json.decode_server(ack_missing_seq, LIMIT).is_err());
}

#[test]
fn messagepack_and_json_carry_the_same_document() {
    // MessagePack is encoded with field names, so transcoding it to JSON gives the JSON form.
    for message in client_messages() {
        let packed = Format::MessagePack.encode(&message).expect("encodes");
        let as_value: serde_json::Value = rmp_serde::from_slice(&packed).expect("decodes");
        assert_eq!(as_value, serde_json::to_value(&message).expect("to value"));
    }
}

#[test]
fn documented_json_examples_decode() {
    fn check(text: &str, expected: ClientMessage) {
        let decoded = Format::Json.decode_client(text.as_bytes(), LIMIT);
        assert_eq!(decoded.ok(), Some(expected), "{text}");
    }
    check(
        r#"{"type":"hello","versions":[1],"clientId":"c1"}"#,
        ClientMessage::Hello {
            versions: vec![1],
            client_id: Some("c1".into()),
        },
    );
    check(
        r#"{"type":"join","spaceId":"s","since":7}"#,
        ClientMessage::Join {
            space_id: "s".into(),
            since: Some(7),
        },
    );
    check(
        r#"{"type":"submit","spaceId":"s","ops":[{"name":"updateCard","body":{"operationId":"o","id":"c","x":1}}]}"#,
        ClientMessage::Submit {
            space_id: "s".into(),
            ops: vec![Operation::new(
                "updateCard",
                json!({"operationId":"o","id":"c","x":1}),
            )],
        },
    );
    check(
        r#"{"type":"readLog","spaceId":"s","after":0,"limit":1000}"#,
        ClientMessage::ReadLog {
            space_id: "s".into(),
            after: 0,
            limit: Some(1000),
        },
    );
}

#[test]
fn decode_failures_are_typed_errors() {
    fn check(format: Format, bytes: &[u8], limit: usize, expected: &str) {
        let error = format.decode_client(bytes, limit).expect_err("must fail");
        let kind = match error {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::Json(_) => "json",
            DecodeError::MessagePack(_) => "msgpack",
        };
        assert_eq!(kind, expected, "{bytes:?}");
    }
    check(Format::Json, b"{}", LIMIT, "json");
    check(Format::Json, b"not json", LIMIT, "json");
    check(Format::Json, br#"{"type":"fly"}"#, LIMIT, "json");
    check(Format::Json, br#"{"type":"join"}"#, LIMIT, "json");
    check(
        Format::Json,
        br#"{"type":"join","spaceId":"s","since":-1}"#,
        LIMIT,
        "json",
    );
    check(
        Format::Json,
        br#"{"type":"leave","spaceId":"s","x":1}"#,
        LIMIT,
        "json",
    );
    check(Format::Json, &[0xff, 0xfe], LIMIT, "json");
    check(
        Format::Json,
        b"{\"type\":\"hello\",\"versions\":[1]}",
        5,
        "too_large",
    );
    check(Format::MessagePack, &[], LIMIT, "msgpack");
    check(Format::MessagePack, &[0xc1], LIMIT, "msgpack");
    check(Format::MessagePack, &[0x81, 0xa4], LIMIT, "msgpack");
}

#[test]
fn deeply_nested_input_is_refused_without_overflowing_the_stack() {
    let depth = 100_000;
    let mut json = String::from(r#"{"type":"presence","spaceId":"s","data":"#);
    json.push_str(&"[".repeat(depth));
    json.push_str(&"]".repeat(depth));
    json.push('}');
    assert!(
        Format::Json
            .decode_client(json.as_bytes(), usize::MAX)
            .is_err()
    );

    // fixmap{type: "presence", spaceId: "s", data: [[[[…]]]]} in MessagePack.
    let mut packed = vec![0x83];
    for (key, value) in [("type", "presence"), ("spaceId", "s")] {
        packed.push(0xa0 | key.len() as u8);
        packed.extend_from_slice(key.as_bytes());
        packed.push(0xa0 | value.len() as u8);
        packed.extend_from_slice(value.as_bytes());
    }
    packed.push(0xa4);
    packed.extend_from_slice(b"data");
    packed.extend(std::iter::repeat_n(0x91, depth));
    packed.push(0x90);
    assert!(
        Format::MessagePack
            .decode_client(&packed, usize::MAX)
            .is_err()
    );
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Format::MessagePack.decode_client(&bytes, LIMIT);
        let _ = Format::Json.decode_client(&bytes, LIMIT);
        let _ = Format::MessagePack.decode_server(&bytes, LIMIT);
    }

    #[test]
    fn mutated_valid_messages_never_panic(index in 0usize..9, flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8)) {
        let messages = client_messages();
        let message = &messages[index % messages.len()];
        for format in [Format::MessagePack, Format::Json] {
            let mut bytes = format.encode(message).expect("encodes");
            for (position, value) in &flips {
                let at = position % bytes.len();
                bytes[at] = *value;
            }
            let _ = format.decode_client(&bytes, LIMIT);
        }
    }
}
