//! Text and data helpers: `array.join(sep)`, `format(template, ..)`, `json::parse` /
//! `json::stringify`, and `regex::` (the `regex` crate: linear time, compiled patterns capped in
//! size and cached).
//!
//! ```rhai
//! ["a", "b"].join(", ");                            // "a, b"
//! format("{} has {} points", name, 10);             // positional
//! format("{user} has {points} points", #{ user: name, points: 10 });
//! let data = json::parse(`{"ok": true}`);
//! regex::captures("roll 2d6", `(\d+)d(\d+)`);       // ["2d6", "2", "6"]
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use rhai::{Array, Dynamic, EvalAltResult, Map, Module};

use super::convert::{script_error, to_dynamic, to_json};
use super::documented;

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// Compiled patterns kept at most (a script building patterns from input cannot grow this).
const CACHED_PATTERNS: usize = 256;

/// Largest compiled pattern, in bytes (`regex`'s own measure).
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

fn text_of(d: &Dynamic) -> String {
    if d.is_string() { d.clone().into_string().unwrap_or_default() } else { d.to_string() }
}

/// The longest string a script may build (`limits.max_string_size`; 0 is no limit).
fn cap(ctx: &rhai::NativeCallContext) -> usize {
    match ctx.engine().max_string_size() {
        0 => usize::MAX,
        n => n,
    }
}

fn too_long(what: &str, limit: usize) -> Box<EvalAltResult> {
    script_error(format!("{what}: the result would be longer than {limit} bytes (limits.max_string_size)"))
}

/// The items as text with `sep` between them, refused before it is built when too long.
fn join(items: &Array, sep: &str, limit: usize) -> RhaiResult<String> {
    let parts: Vec<String> = items.iter().map(text_of).collect();
    let total = parts.iter().map(String::len).sum::<usize>().saturating_add(sep.len().saturating_mul(parts.len()));
    if total > limit {
        return Err(too_long("join", limit));
    }
    Ok(parts.join(sep))
}

/// `{}` takes the next value, `{0}` a value by position, `{name}` a value of the map; `{{` and
/// `}}` are braces.
#[cfg(test)]
fn format(template: &str, values: &[Dynamic]) -> RhaiResult<String> {
    format_capped(template, values, usize::MAX)
}

/// [`format`], stopping as soon as the result passes `limit` bytes.
fn format_capped(template: &str, values: &[Dynamic], limit: usize) -> RhaiResult<String> {
    let named = match values {
        [one] if one.is_map() => one.read_lock::<Map>().map(|m| m.clone()),
        _ => None,
    };
    let mut out = String::with_capacity(template.len() + 16);
    let mut next = 0;
    let mut chars = template.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|p| p.1) == Some('{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek().map(|p| p.1) == Some('}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let rest = &template[i + 1..];
                let end =
                    rest.find('}').ok_or_else(|| script_error(format!("format: an unclosed {{ in {template:?}")))?;
                let key = rest[..end].trim();
                for _ in 0..end + 1 {
                    chars.next();
                }
                let value = if key.is_empty() {
                    next += 1;
                    values.get(next - 1).map(text_of)
                } else if let Ok(i) = key.parse::<usize>() {
                    values.get(i).map(text_of)
                } else {
                    named.as_ref().and_then(|m| m.get(key)).map(text_of)
                };
                out.push_str(&value.ok_or_else(|| {
                    script_error(format!(
                        "format: nothing for {{{key}}} in {template:?} ({} values given)",
                        values.len()
                    ))
                })?);
                if out.len() > limit {
                    return Err(too_long("format", limit));
                }
            }
            '}' => return Err(script_error(format!("format: a lone }} in {template:?} (write }}}} for a brace)"))),
            c => out.push(c),
        }
    }
    Ok(out)
}

/// The compiled patterns of one runtime.
#[derive(Debug, Default)]
struct Patterns(Mutex<HashMap<String, Arc<regex::Regex>>>);

impl Patterns {
    fn get(&self, pattern: &str) -> RhaiResult<Arc<regex::Regex>> {
        if let Some(re) = self.0.lock().unwrap_or_else(PoisonError::into_inner).get(pattern) {
            return Ok(re.clone());
        }
        let re = regex::RegexBuilder::new(pattern)
            .size_limit(PATTERN_SIZE_LIMIT)
            .dfa_size_limit(PATTERN_SIZE_LIMIT)
            .build()
            .map_err(|e| script_error(format!("regex: bad pattern {pattern:?}: {e}")))?;
        let re = Arc::new(re);
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHED_PATTERNS {
            cache.clear();
        }
        cache.insert(pattern.to_owned(), re.clone());
        Ok(re)
    }
}

fn captures(re: &regex::Regex, text: &str) -> Dynamic {
    let Some(c) = re.captures(text) else { return Dynamic::UNIT };
    let names: Vec<Option<&str>> = re.capture_names().collect();
    if names.iter().flatten().next().is_some() {
        let mut m = Map::new();
        for (i, name) in names.iter().enumerate() {
            let value = c.get(i).map_or(Dynamic::UNIT, |g| g.as_str().into());
            m.insert(name.map_or_else(|| i.to_string(), str::to_owned).into(), value);
        }
        return m.into();
    }
    c.iter().map(|g| g.map_or(Dynamic::UNIT, |g| g.as_str().into())).collect::<Array>().into()
}

/// Sleeps, never past the callback's total budget: there the callback is stopped.
fn sleep(secs: f64) -> RhaiResult<()> {
    if !(secs >= 0.0 && secs.is_finite()) {
        return Err(script_error(format!("sleep: seconds must be 0 or more, got {secs}")));
    }
    crate::script::wait::sleep(std::time::Duration::from_secs_f64(secs.min(1e6)));
    match crate::script::context::expired() {
        Some(token) => Err(EvalAltResult::ErrorTerminated(token.into(), rhai::Position::NONE).into()),
        None => Ok(()),
    }
}

/// The global text helpers: `join` and `format`, and a `sleep` that respects the callback's
/// deadlines and gives its worker to others while it sleeps.
pub fn global() -> Module {
    let mut m = Module::new();
    let doc = "pause this callback for `seconds` without holding a worker (never past its total budget, limits.callback_total_ms)";
    documented("sleep", &["seconds: number"], doc)
        .set_into_module(&mut m, |ctx: rhai::NativeCallContext, secs: f64| {
            sleep(secs).map_err(|e| super::convert::at_call(e, &ctx))
        });
    documented("sleep", &["seconds: int"], doc).set_into_module(
        &mut m,
        |ctx: rhai::NativeCallContext, secs: rhai::INT| {
            sleep(secs as f64).map_err(|e| super::convert::at_call(e, &ctx))
        },
    );
    type Ctx<'a> = rhai::NativeCallContext<'a>;
    documented("join", &["items: array", "separator: string"], "the items as text, separated by `separator`")
        .in_global_namespace()
        .set_into_module(&mut m, |ctx: Ctx, items: &mut Array, sep: &str| join(items, sep, cap(&ctx)));
    documented("join", &["items: array"], "the items as text, one after another")
        .in_global_namespace()
        .set_into_module(&mut m, |ctx: Ctx, items: &mut Array| join(items, "", cap(&ctx)));
    let doc = "the template with `{}` (next value), `{0}` (by position) or `{name}` (of a map) filled in";
    documented("format", &["template: string", "values: map | array"], doc).set_into_module(
        &mut m,
        |ctx: Ctx, t: &str, v: Dynamic| {
            let values = if v.is_array() { v.into_array().unwrap_or_default() } else { vec![v] };
            format_capped(t, &values, cap(&ctx))
        },
    );
    documented("format", &["template: string", "a: any", "b: any"], doc)
        .set_into_module(&mut m, |ctx: Ctx, t: &str, a: Dynamic, b: Dynamic| format_capped(t, &[a, b], cap(&ctx)));
    documented("format", &["template: string", "a: any", "b: any", "c: any"], doc)
        .set_into_module(&mut m, |ctx: Ctx, t: &str, a: Dynamic, b: Dynamic, c: Dynamic| {
            format_capped(t, &[a, b, c], cap(&ctx))
        });
    documented("format", &["template: string", "a: any", "b: any", "c: any", "d: any"], doc)
        .set_into_module(&mut m, |ctx: Ctx, t: &str, a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic| {
            format_capped(t, &[a, b, c, d], cap(&ctx))
        });
    documented("format", &["template: string", "a: any", "b: any", "c: any", "d: any", "e: any"], doc).set_into_module(
        &mut m,
        |ctx: Ctx, t: &str, a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic, e: Dynamic| {
            format_capped(t, &[a, b, c, d, e], cap(&ctx))
        },
    );
    let many = "format with six values; more go in an array: format(template, [a, b, ...])";
    documented("format", &["template: string", "a: any", "b: any", "c: any", "d: any", "e: any", "f: any"], many)
        .set_into_module(
            &mut m,
            |ctx: Ctx, t: &str, a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic, e: Dynamic, f: Dynamic| {
                format_capped(t, &[a, b, c, d, e, f], cap(&ctx))
            },
        );
    m
}

/// The `json` module.
pub fn json() -> Module {
    let mut m = Module::new();
    documented("parse", &["text: string"], "the value a JSON text holds (maps, arrays, numbers, ...)").set_into_module(
        &mut m,
        |text: &str| -> RhaiResult<Dynamic> {
            let v: serde_json::Value =
                serde_json::from_str(text).map_err(|e| script_error(format!("json::parse: not JSON: {e}")))?;
            Ok(to_dynamic(&v))
        },
    );
    documented("stringify", &["value: any"], "the value as compact JSON text")
        .set_into_module(&mut m, |v: Dynamic| -> RhaiResult<String> {
            Ok(to_json(&v, "json::stringify")?.to_string())
        });
    documented("pretty", &["value: any"], "the value as indented JSON text").set_into_module(
        &mut m,
        |v: Dynamic| -> RhaiResult<String> {
            serde_json::to_string_pretty(&to_json(&v, "json::pretty")?).map_err(|e| script_error(e.to_string()))
        },
    );
    m
}

/// The `regex` module.
pub fn regex() -> Module {
    let mut m = Module::new();
    let patterns = Arc::new(Patterns::default());
    let p = patterns.clone();
    documented("is_match", &["text: string", "pattern: string"], "whether the pattern matches somewhere in the text")
        .set_into_module(&mut m, move |t: &str, pat: &str| Ok::<_, Box<EvalAltResult>>(p.get(pat)?.is_match(t)));
    let p = patterns.clone();
    documented("find", &["text: string", "pattern: string"], "the first match, `()` when none").set_into_module(
        &mut m,
        move |t: &str, pat: &str| -> RhaiResult<Dynamic> {
            Ok(p.get(pat)?.find(t).map_or(Dynamic::UNIT, |f| f.as_str().into()))
        },
    );
    let p = patterns.clone();
    documented("find_all", &["text: string", "pattern: string"], "every match, in order").set_into_module(
        &mut m,
        move |t: &str, pat: &str| -> RhaiResult<Array> {
            Ok(p.get(pat)?.find_iter(t).map(|f| f.as_str().into()).collect())
        },
    );
    let p = patterns.clone();
    let doc = "the first match's groups: an array (0 is the whole match), a map with named groups, `()` when none";
    documented("captures", &["text: string", "pattern: string"], doc)
        .set_into_module(&mut m, move |t: &str, pat: &str| -> RhaiResult<Dynamic> { Ok(captures(&*p.get(pat)?, t)) });
    let p = patterns.clone();
    documented(
        "replace",
        &["text: string", "pattern: string", "replacement: string"],
        "every match replaced (`$1`, `${name}` refer to groups)",
    )
    .set_into_module(
        &mut m,
        move |ctx: rhai::NativeCallContext, t: &str, pat: &str, r: &str| -> RhaiResult<String> {
            let re = p.get(pat)?;
            // Bounded before it is built: every match may become the whole replacement.
            let most = t.len().saturating_add(re.find_iter(t).count().saturating_mul(r.len()));
            if most > cap(&ctx) {
                return Err(too_long("regex::replace", cap(&ctx)));
            }
            Ok(re.replace_all(t, r).into_owned())
        },
    );
    let p = patterns;
    documented("split", &["text: string", "pattern: string"], "the text split at every match").set_into_module(
        &mut m,
        move |t: &str, pat: &str| -> RhaiResult<Array> {
            Ok(p.get(pat)?.split(t).map(|s| Dynamic::from(s.to_owned())).collect())
        },
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_fills_positions_names_and_braces() {
        let v = |s: &str| Dynamic::from(s.to_owned());
        assert_eq!(format("{} has {} points", &[v("ann"), Dynamic::from_int(3)]).unwrap(), "ann has 3 points");
        assert_eq!(format("{1}{0}{{}}", &[v("a"), v("b")]).unwrap(), "ba{}");
        let mut m = Map::new();
        m.insert("who".into(), v("bo"));
        assert_eq!(format("hi {who}", &[m.into()]).unwrap(), "hi bo");
        assert!(format("{} {}", &[v("x")]).is_err());
        assert!(format("{oops", &[]).is_err());
        assert!(format("a } b", &[]).is_err());
    }

    #[test]
    fn patterns_are_cached_and_bounded() {
        let p = Patterns::default();
        let caps = captures(&p.get(r"(?P<n>\d+)d(\d+)").unwrap(), "roll 2d6");
        let caps = caps.read_lock::<Map>().unwrap().clone();
        assert_eq!(caps["n"].clone().into_string().unwrap(), "2");
        assert!(p.get("(").is_err());
        // A pattern that compiles past the size limit is refused, not built.
        assert!(p.get(r"\w{1000}\w{1000}\w{1000}").is_err());
        for i in 0..300 {
            p.get(&format!("a{i}")).unwrap();
        }
        assert!(p.0.lock().unwrap().len() <= CACHED_PATTERNS);
    }
}

#[cfg(test)]
mod caps {
    use super::*;

    #[test]
    fn results_past_the_string_limit_are_refused_before_they_are_built() {
        let big: Array = (0..1000).map(|_| Dynamic::from("x".repeat(1000))).collect();
        assert!(join(&big, "", 100_000).unwrap_err().to_string().contains("max_string_size"));
        assert_eq!(join(&big[..2].to_vec(), "-", 100_000).unwrap().len(), 2001);
        let v = Dynamic::from("y".repeat(1000));
        assert!(format_capped(&"{0}".repeat(200), &[v], 100_000).is_err());
    }
}
