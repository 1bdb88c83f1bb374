//! What a notification says: the stored event (JSON), rendered at each attempt into the
//! destination's format — `keyward` (the event as JSON) or `slack` (an incoming-webhook message,
//! `text` and `blocks`).

use serde_json::{json, Value};

use super::DestinationFormat;
use keyward_storage::vocab::iso8601;

/// The body of `event` (as stored) for delivery `delivery_id` in `format`.
pub(crate) fn render(format: DestinationFormat, event: &Value, delivery_id: &str) -> Vec<u8> {
    let at_ms = event["at_ms"].as_i64().unwrap_or_default();
    match format {
        DestinationFormat::Keyward => {
            let mut body = event.clone();
            if let Some(map) = body.as_object_mut() {
                map.insert("delivery_id".into(), delivery_id.into());
                map.insert("at".into(), iso8601(at_ms).into());
            }
            body.to_string().into_bytes()
        }
        DestinationFormat::Slack => {
            let text = summary(event);
            json!({
                "text": text,
                "blocks": [
                    { "type": "section", "text": { "type": "mrkdwn", "text": text } },
                    { "type": "context", "elements": [{
                        "type": "mrkdwn",
                        "text": format!("{} · delivery {delivery_id}", iso8601(at_ms)),
                    }]}
                ]
            })
            .to_string()
            .into_bytes()
        }
    }
}

/// One line a person reads in a chat channel.
fn summary(event: &Value) -> String {
    let s = |v: &Value| v.as_str().unwrap_or("?").to_owned();
    let cluster = format!(
        "cluster *{}* (`{}`)",
        s(&event["cluster"]["name"]),
        s(&event["cluster"]["id"])
    );
    match event["type"].as_str() {
        Some("alarm.transition") => {
            let icon = if event["to"] == "ALARM" {
                ":rotating_light:"
            } else {
                ":white_check_mark:"
            };
            format!(
                "{icon} keyward {cluster}: alarm `{}` {} → {}: {}",
                s(&event["alarm"]),
                s(&event["from"]),
                s(&event["to"]),
                s(&event["reason"])
            )
        }
        Some("test") => format!(
            ":wave: keyward test notification for {cluster}: this destination receives its alarms"
        ),
        Some("notifications.suppressed") => format!(
            ":warning: keyward: {} notification(s) to this destination were suppressed by its \
             rate limit; see the delivery log",
            event["suppressed"].as_u64().unwrap_or_default()
        ),
        _ => "keyward notification".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_formats_carry_the_alarm_and_the_delivery_id() {
        let event = json!({
            "type": "alarm.transition",
            "cluster": {"id": "c-1", "name": "prod"},
            "alarm": "key-disabled", "from": "OK", "to": "ALARM",
            "reason": "the key is disabled", "at_ms": 0
        });
        let body: Value =
            serde_json::from_slice(&render(DestinationFormat::Keyward, &event, "d-1")).unwrap();
        assert_eq!(body["delivery_id"], "d-1");
        assert_eq!(body["alarm"], "key-disabled");
        assert_eq!(body["at"], "1970-01-01T00:00:00Z");
        let slack: Value =
            serde_json::from_slice(&render(DestinationFormat::Slack, &event, "d-1")).unwrap();
        let text = slack["text"].as_str().unwrap();
        assert!(text.contains("`key-disabled` OK → ALARM"), "{text}");
        assert_eq!(slack["blocks"][0]["text"]["text"], text);
        assert!(slack["blocks"][1]["elements"][0]["text"]
            .as_str()
            .unwrap()
            .contains("d-1"));
    }
}
