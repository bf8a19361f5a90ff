//! Fuzzes the label and field selector parsers (apimachinery's grammar): any text gives a
//! selector or a 400 with a message, never a panic; and a selector that parses with a
//! requirement and no negation never matches an object without labels (the old parser let
//! `!!!` select everything).
#![no_main]

use libfuzzer_sys::fuzz_target;
use minikind_apiserver::selectors::Selector;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Selector::parse_labels(text) {
        Ok(sel) => {
            let negation = text.contains('!') || text.contains("notin");
            if !sel.is_empty() && !negation {
                assert!(
                    !sel.matches_labels(Some(&serde_json::json!({}))),
                    "{text:?}"
                );
            }
            let _ = sel.matches_labels(Some(&serde_json::json!({"a": "b", "app": "web"})));
        }
        Err(e) => assert!(e.code == 400 && !e.message.is_empty()),
    }
    match Selector::parse_fields(text) {
        Ok(sel) => {
            let _ = sel.matches(|k| (k == "metadata.name").then_some("x"));
        }
        Err(e) => assert!(e.code == 400 && !e.message.is_empty()),
    }
});
