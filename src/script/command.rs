//! Commands: `command("name", #{options}, |ev, rest, args| ...)` runs on messages that start
//! with a configured prefix and the name (or an alias). The `[commands]` config sets the
//! prefixes (default `/`; e.g. `["/", "／", ""]`) and whether names match in any case.
//! Options: `permission` (`"admin"`, `"owner"`, `"superuser"`), `cooldown_ms` with `per`
//! (`"user"`, `"group"`, `"global"`), and `need_at` (in groups, only when the bot is
//! @-mentioned). Refusals are silent unless the config gives a message.

use std::time::Duration;

use rhai::{Dynamic, Map};

use crate::event::Event;

/// `[commands]`: how commands are recognised and refused.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Prefixes, tried longest first (`""` allows commands without one).
    pub prefixes: Vec<String>,
    /// Whether `/Help` runs `help`.
    pub case_insensitive: bool,
    /// Said to a user who lacks the permission (nothing when empty).
    pub refuse_message: String,
    /// Said to a user whose command is cooling down (nothing when empty); `{secs}` is replaced
    /// by the seconds left.
    pub cooldown_message: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            prefixes: vec!["/".into()],
            case_insensitive: false,
            refuse_message: String::new(),
            cooldown_message: String::new(),
        }
    }
}

/// Who may run a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    /// Anyone.
    Anyone,
    /// Group admins, owners and superusers.
    Admin,
    /// Group owners and superusers.
    Owner,
    /// The bot's superusers (config `superusers`).
    Superuser,
}

/// Whose uses a cooldown counts together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Per {
    /// Each user.
    User,
    /// Each group (or private chat).
    Group,
    /// Everyone.
    Global,
}

/// A command's options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Who may run it.
    pub permission: Permission,
    /// One use per this long, counted per `per`.
    pub cooldown: Option<(Duration, Per)>,
    /// In groups, only when the bot is @-mentioned.
    pub need_at: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { permission: Permission::Anyone, cooldown: None, need_at: false }
    }
}

impl Options {
    /// Reads a script's options map; the error names what is wrong.
    pub fn from_map(m: &Map) -> Result<Options, String> {
        let mut o = Options::default();
        let text = |v: &Dynamic| v.clone().into_string().map_err(|t| format!("expected a string, got {t}"));
        for (k, v) in m {
            match k.as_str() {
                "permission" => {
                    o.permission = match text(v)?.as_str() {
                        "anyone" | "member" => Permission::Anyone,
                        "admin" => Permission::Admin,
                        "owner" => Permission::Owner,
                        "superuser" => Permission::Superuser,
                        other => return Err(format!("permission is anyone, admin, owner or superuser, not {other:?}")),
                    }
                }
                "cooldown_ms" => {
                    let ms = v.as_int().map_err(|t| format!("cooldown_ms is a number of milliseconds, not {t}"))?;
                    let per = o.cooldown.map_or(Per::User, |c| c.1);
                    o.cooldown = Some((Duration::from_millis(ms.max(0) as u64), per));
                }
                "per" => {
                    let per = match text(v)?.as_str() {
                        "user" => Per::User,
                        "group" => Per::Group,
                        "global" => Per::Global,
                        other => return Err(format!("per is user, group or global, not {other:?}")),
                    };
                    let ms = o.cooldown.map_or(Duration::ZERO, |c| c.0);
                    o.cooldown = Some((ms, per));
                }
                "need_at" => o.need_at = v.as_bool().map_err(|t| format!("need_at is true or false, not {t}"))?,
                other => {
                    return Err(format!("`{other}` is not a command option (permission, cooldown_ms, per, need_at)"));
                }
            }
        }
        if o.cooldown.is_some_and(|c| c.0.is_zero()) {
            return Err("`per` needs `cooldown_ms`".into());
        }
        Ok(o)
    }

    /// Whether `ev`'s sender may run the command.
    pub fn permits(&self, ev: &Event) -> bool {
        let role = || ev.role();
        match self.permission {
            Permission::Anyone => true,
            Permission::Admin => ev.is_superuser() || matches!(role(), Some("admin" | "owner")),
            Permission::Owner => ev.is_superuser() || role() == Some("owner"),
            Permission::Superuser => ev.is_superuser(),
        }
    }
}

/// The text after the command, if `text` is one of `names` after one of the prefixes.
pub fn args_of<'t>(text: &'t str, names: &[String], settings: &Settings) -> Option<&'t str> {
    let text = text.trim_start();
    settings.prefixes.iter().find_map(|prefix| {
        let body = text.strip_prefix(prefix.as_str())?;
        names.iter().find_map(|n| {
            let head = body.get(..n.len())?;
            let same = if settings.case_insensitive { head.eq_ignore_ascii_case(n) } else { head == n };
            if !same {
                return None;
            }
            let rest = &body[n.len()..];
            match rest.chars().next() {
                None => Some(""),
                Some(c) if c.is_whitespace() => Some(rest.trim()),
                Some(_) => None,
            }
        })
    })
}

/// `rest` split into words like a shell does: spaces separate, quotes (`"..."`, `'...'`) keep
/// spaces, a backslash escapes the next character.
pub fn split_args(rest: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"'), '\\') | (None, '\\') => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
                in_word = true;
            }
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn prefixes_case_and_aliases() {
        let s = Settings {
            prefixes: vec!["/".into(), "／".into(), "".into()],
            case_insensitive: true,
            ..Settings::default()
        };
        let n = names(&["sign", "签到"]);
        assert_eq!(args_of("/sign now", &n, &s), Some("now"));
        assert_eq!(args_of("／SIGN", &n, &s), Some(""));
        assert_eq!(args_of("签到 1", &n, &s), Some("1"));
        assert_eq!(args_of("/signal", &n, &s), None, "a longer word is another command");
        let strict = Settings::default();
        assert_eq!(args_of("/SIGN", &n, &strict), None);
        assert_eq!(args_of("sign", &n, &strict), None);
    }

    #[test]
    fn arguments_split_like_a_shell() {
        assert_eq!(split_args(r#"add "New York" 'it''s' a\ b"#), ["add", "New York", "its", "a b"]);
        assert_eq!(split_args("  spaced   out "), ["spaced", "out"]);
        assert_eq!(split_args(r#""" x"#), ["", "x"], "an empty quoted word is a word");
        assert!(split_args("").is_empty());
    }

    #[test]
    fn options_are_checked() {
        let mut m = Map::new();
        m.insert("permission".into(), "admin".into());
        m.insert("cooldown_ms".into(), Dynamic::from_int(5000));
        m.insert("per".into(), "group".into());
        let o = Options::from_map(&m).unwrap();
        assert_eq!((o.permission, o.cooldown), (Permission::Admin, Some((Duration::from_secs(5), Per::Group))));
        m.insert("cooldown".into(), Dynamic::from_int(1));
        assert!(Options::from_map(&m).unwrap_err().contains("`cooldown` is not a command option"));
    }
}
