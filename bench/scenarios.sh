# The bench's scenarios, sourced by bench/run.sh and tools/link_order.sh.

# write_scripts DIR: the scripts of each scenario, in DIR/echo, DIR/counter and DIR/many.
#   echo       command("echo", |ev, args| ev.reply(args));
#   counter    increments a per-user counter in kv, then replies with it
#   many       20 scripts, each with several handlers; one matches a given event
write_scripts() {
    mkdir -p "$1"/{echo,counter,many}
    echo 'command("echo", |ev, args| ev.reply(args));' >"$1/echo/echo.rhai"
    echo 'command("count", |ev, args| { let n = kv::incr("count:" + ev.user_id); ev.reply(`${args} ${n}`); });' \
        >"$1/counter/counter.rhai"
    for i in $(seq 0 19); do
        cat >"$1/many/s$i.rhai" <<RHAI
command("cmd$i", |ev, args| ev.reply(args));
command("other$i", |ev, args| ev.reply("other"));
on("notice.group_increase", |ev| ev.reply("welcome"));
on("request.friend", |ev| print(ev.user_id));
fn on_notice_group_decrease(ev) { print(ev.user_id); }
RHAI
    done
}

# bot_config PROTOCOL PORT: the [[bot]] table for rhaibot against loadgen.
bot_config() {
    case $1 in
    onebot11) printf 'protocol = "onebot11"\nurl = "ws://127.0.0.1:%s/"\n' "$2" ;;
    milky) printf 'protocol = "milky"\nurl = "http://127.0.0.1:%s"\n' "$2" ;;
    qq) printf 'protocol = "qq"\napp_id = "1"\nsecret = "loadgen"\nevents = "gateway"\napi_url = "http://127.0.0.1:%s"\ntoken_url = "http://127.0.0.1:%s"\n' "$2" "$2" ;;
    esac
}
