//! CQ codes: OneBot 11's string message format, `text[CQ:type,key=value]text`.
//!
//! Escaping rules (OneBot 11 "CQ 码"): `&` -> `&amp;`, `[` -> `&#91;`, `]` -> `&#93;` everywhere,
//! and `,` -> `&#44;` inside parameter values only. `&` is escaped first and unescaped last so
//! that `&amp;#91;` survives a round trip as the literal text `&#91;`.

use serde_json::{Map, Value, json};

/// Escapes plain text (outside CQ codes).
pub fn escape_text(s: &str) -> String {
    s.replace('&', "&amp;").replace('[', "&#91;").replace(']', "&#93;")
}

/// Escapes a CQ parameter value.
pub fn escape_value(s: &str) -> String {
    escape_text(s).replace(',', "&#44;")
}

/// Reverses [`escape_text`] and [`escape_value`].
pub fn unescape(s: &str) -> String {
    if !s.contains('&') {
        return s.to_owned();
    }
    s.replace("&#44;", ",").replace("&#91;", "[").replace("&#93;", "]").replace("&amp;", "&")
}

/// Parses a CQ string into an array of `{type, data}` segments. Malformed codes (no closing
/// `]`) are kept as text, so nothing the user typed is lost.
pub fn parse(s: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let Some(start) = rest.find("[CQ:") else {
            push_text(&mut out, rest);
            break;
        };
        let Some(len) = rest[start..].find(']') else {
            push_text(&mut out, rest);
            break;
        };
        push_text(&mut out, &rest[..start]);
        out.push(parse_code(&rest[start + 4..start + len]));
        rest = &rest[start + len + 1..];
    }
    out
}

fn push_text(out: &mut Vec<Value>, escaped: &str) {
    if !escaped.is_empty() {
        out.push(json!({"type": "text", "data": {"text": unescape(escaped)}}));
    }
}

fn parse_code(body: &str) -> Value {
    let mut parts = body.split(',');
    let kind = parts.next().unwrap_or_default().trim();
    let mut data = Map::new();
    for part in parts {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        data.insert(k.to_owned(), Value::String(unescape(v)));
    }
    json!({"type": kind, "data": data})
}

/// Formats segments as a CQ string; `text` segments become bare escaped text.
pub fn format(segments: &[Value]) -> String {
    let mut out = String::new();
    for seg in segments {
        let kind = seg.get("type").and_then(Value::as_str).unwrap_or("text");
        let data = seg.get("data").and_then(Value::as_object);
        if kind == "text" {
            let text = data.and_then(|d| d.get("text")).and_then(Value::as_str).unwrap_or_default();
            out.push_str(&escape_text(text));
            continue;
        }
        out.push_str("[CQ:");
        out.push_str(kind);
        for (k, v) in data.into_iter().flatten() {
            out.push(',');
            out.push_str(k);
            out.push('=');
            match v {
                Value::String(s) => out.push_str(&escape_value(s)),
                other => out.push_str(&escape_value(&other.to_string())),
            }
        }
        out.push(']');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_text_and_codes_with_escapes() {
        let segs = parse("a&amp;b&#91;x&#93;[CQ:at,qq=123][CQ:image,file=a&#44;b.png,url=u]tail");
        assert_eq!(
            Value::Array(segs),
            json!([
                {"type": "text", "data": {"text": "a&b[x]"}},
                {"type": "at", "data": {"qq": "123"}},
                {"type": "image", "data": {"file": "a,b.png", "url": "u"}},
                {"type": "text", "data": {"text": "tail"}},
            ])
        );
    }

    #[test]
    fn unclosed_code_stays_text() {
        assert_eq!(parse("x[CQ:at,qq=1"), vec![json!({"type": "text", "data": {"text": "x[CQ:at,qq=1"}})]);
    }

    #[test]
    fn ampersand_is_unescaped_last() {
        assert_eq!(unescape("&amp;#91;"), "&#91;");
        assert_eq!(parse(&format(&[json!({"type": "text", "data": {"text": "&#91;"}})]))[0]["data"]["text"], "&#91;");
    }

    use proptest::prelude::*;

    /// Text made of the characters CQ escaping is about, and anything else.
    fn awkward() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![Just('&'), Just('['), Just(']'), Just(','), Just('='), Just('#'), Just(';'), any::<char>()],
            0..24,
        )
        .prop_map(|cs| cs.into_iter().collect())
    }

    /// A segment list as a message can hold it: no empty or adjacent text segments (they would
    /// merge into one on the way back).
    fn segments() -> impl Strategy<Value = Vec<Value>> {
        let text = awkward()
            .prop_filter("non-empty", |t| !t.is_empty())
            .prop_map(|t| json!({"type": "text", "data": {"text": t}}));
        let code = ("[a-z][a-z_]{0,8}", proptest::collection::btree_map("[a-z][a-z0-9_]{0,6}", awkward(), 0..4))
            .prop_filter("not text", |(kind, _)| kind != "text")
            .prop_map(|(kind, data)| json!({"type": kind, "data": data}));
        proptest::collection::vec(prop_oneof![text, code], 0..8).prop_map(|segs| {
            let mut out: Vec<Value> = Vec::new();
            for seg in segs {
                let both_text = seg["type"] == "text" && out.last().is_some_and(|l: &Value| l["type"] == "text");
                if !both_text {
                    out.push(seg);
                }
            }
            out
        })
    }

    proptest! {
        #[test]
        fn parse_inverts_format(segs in segments()) {
            prop_assert_eq!(parse(&format(&segs)), segs);
        }

        #[test]
        fn escaping_round_trips_any_text(text in awkward()) {
            prop_assert_eq!(unescape(&escape_text(&text)), text.clone());
            prop_assert_eq!(unescape(&escape_value(&text)), text);
        }
    }

    #[test]
    fn round_trip_of_awkward_text_and_values() {
        let segs = vec![
            json!({"type": "text", "data": {"text": "[CQ:fake], & &amp; ,"}}),
            json!({"type": "share", "data": {"url": "http://a/?x=1,2&y=[3]", "title": "&#44;"}}),
        ];
        assert_eq!(parse(&format(&segs)), segs);
    }
}
