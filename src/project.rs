//! `rhaibot new NAME`: a ready bot project — a commented config, a script with a command, kv,
//! a cron job and a conversation, its scenario test, and a three-line README. `rhaibot test`
//! and `rhaibot run` work in it at once.

use std::path::Path;

const CONFIG: &str = r#"# rhaibot.toml — this bot's settings; every key is in rhaibot's rhaibot.example.toml.
# Relative paths are relative to this file.
scripts_dir = "scripts"
data_dir = "data"
# The zone of cron jobs and time:: functions.
timezone = "local"

# Without a [[bot]], `rhaibot run` chats on the terminal. To connect QQ, add one, e.g.:
# [[bot]]
# protocol = "onebot11"              # or "milky", or "qq" (the official platform)
# url = "ws://127.0.0.1:3001/"
"#;

const SCRIPT: &str = r#"// bot.rhai — edit and save: the running bot picks the change up.

// ping -> pong
on("message", |ev| {
    if ev.text == "ping" { ev.reply("pong"); }
});

// /count: how many times anyone asked, kept across restarts.
command("count", |ev| {
    let n = kv::incr("count");
    ev.reply(`asked ${n} times`);
});

// /name: a conversation: the next message from the same person answers.
command("name", |ev| {
    let answer = ev.prompt("what is your name?", 60000);
    if answer == () { ev.reply("no answer; try /name again"); return; }
    kv::set(`name:${ev.user_id}`, answer.text);
    ev.reply(`nice to meet you, ${answer.text}`);
});

// Every morning at 8:00: a greeting to each group that used /count.
cron("morning", "0 0 8 * * *", |fired_at| {
    print(`good morning (${time::format(fired_at, "%Y-%m-%d")})`);
});
"#;

const SCENARIO: &str = r#"# bot.test.toml — run with `rhaibot test`.
name = "bot answers"

[[step]]
send = "ping"
reply = "pong"

[[step]]
send = "/count"
reply = "asked 1 times"

[[step]]
send = "/name"
reply = "what is your name?"

[[step]]
send = "Ada"
reply = "nice to meet you, Ada"
kv = { script = "bot", key = "name:10001", equals = "Ada" }
"#;

/// Creates the project directory `dir` (which must not exist yet).
pub fn create(dir: &Path) -> std::io::Result<()> {
    if dir.exists() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::AlreadyExists,
            format!("{} exists already; pick a new name", dir.display()),
        ));
    }
    let name = dir.file_name().map_or_else(|| "bot".into(), |n| n.to_string_lossy().into_owned());
    std::fs::create_dir_all(dir.join("scripts"))?;
    std::fs::write(dir.join("rhaibot.toml"), CONFIG)?;
    std::fs::write(dir.join("scripts/bot.rhai"), SCRIPT)?;
    std::fs::write(dir.join("scripts/bot.test.toml"), SCENARIO)?;
    std::fs::write(
        dir.join("README.md"),
        format!(
            "# {name}\n\n`rhaibot run` chats with the bot on the terminal; `rhaibot test` runs `scripts/*.test.toml`; edit `scripts/bot.rhai` while it runs.\n"
        ),
    )?;
    Ok(())
}
