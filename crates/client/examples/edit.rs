//! Two clients edit one space together over a running server:
//!
//! ```sh
//! cargo run --bin spacesync -- serve                      # in one terminal
//! cargo run -p spacesync-client --example edit            # in another
//! cargo run -p spacesync-client --example edit -- ws://127.0.0.1:8080/ws my-space
//! ```
//!
//! Alice creates a card and a connection *before* the card it points to; Bob creates that
//! card; both see the acks, the hold and the broadcasts.

use serde_json::json;
use spacesync_client::Client;
use spacesync_protocol::{Format, Operation, ServerMessage};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "ws://127.0.0.1:8080/ws".to_owned());
    let space = args.next().unwrap_or_else(|| "example-space".to_owned());
    let run = std::process::id();

    let mut alice = Client::connect(&url, Format::MessagePack, Some("alice")).await?;
    let mut bob = Client::connect(&url, Format::Json, Some("bob")).await?;
    for client in [&mut alice, &mut bob] {
        client.join(&space, None).await?;
        match client.recv().await? {
            ServerMessage::Joined { seq, .. } => {
                println!("{} joined {space} at seq {seq}", client.client_id())
            }
            other => anyhow::bail!("expected joined, got {other:?}"),
        }
    }

    let card_a = format!("card-a-{run}");
    let card_b = format!("card-b-{run}");
    let op = |name: &str, id: String, body: serde_json::Value| {
        let mut body = body;
        body["operationId"] = json!(id);
        Operation::new(name, body)
    };
    alice
        .submit(&space, vec![
            op("createCard", format!("op-a1-{run}"), json!({"id": card_a, "x": 10, "y": 20, "name": "from alice"})),
            // Bob's card does not exist yet: the server holds this until it does.
            op("createConnection", format!("op-a2-{run}"), json!({"id": format!("conn-{run}"), "startItemId": card_a, "endItemId": card_b})),
        ])
        .await?;
    bob.submit(
        &space,
        vec![op(
            "createCard",
            format!("op-b1-{run}"),
            json!({"id": card_b, "x": 300, "y": 20, "name": "from bob"}),
        )],
    )
    .await?;

    // Alice: a held for the connection, acks for her two ops, Bob's card as a broadcast.
    // Bob: the ack of his card and Alice's two ops as broadcasts.
    let (mut alice_left, mut bob_left) = (4, 3);
    while alice_left > 0 || bob_left > 0 {
        tokio::select! {
            message = alice.recv(), if alice_left > 0 => { print("alice", &message?); alice_left -= 1; }
            message = bob.recv(), if bob_left > 0 => { print("bob  ", &message?); bob_left -= 1; }
        }
    }
    alice.close().await?;
    bob.close().await?;
    Ok(())
}

fn print(who: &str, message: &ServerMessage) {
    match message {
        ServerMessage::Ack {
            operation_id, seq, ..
        } => println!("{who} ← ack {operation_id} = seq {seq}"),
        ServerMessage::Held {
            operation_id,
            waiting_for,
            ..
        } => println!("{who} ← held {operation_id} waiting for {waiting_for:?}"),
        ServerMessage::Broadcast { seq, op, .. } => {
            println!("{who} ← broadcast seq {seq}: {}", op.name)
        }
        other => println!("{who} ← {other:?}"),
    }
}
