//! Any bytes as a protocol frame, from either side: decoding never panics,
//! and a decoded message encodes to JSON that decodes to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use xene_core::protocol::{AgentMessage, ServerMessage};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = serde_json::from_slice::<AgentMessage>(data) {
        let json = serde_json::to_string(&message).expect("a message encodes");
        let back: AgentMessage = serde_json::from_str(&json).expect("its encoding decodes");
        assert_eq!(back, message);
    }
    if let Ok(message) = serde_json::from_slice::<ServerMessage>(data) {
        let json = serde_json::to_string(&message).expect("a message encodes");
        let back: ServerMessage = serde_json::from_str(&json).expect("its encoding decodes");
        assert_eq!(back, message);
    }
});
