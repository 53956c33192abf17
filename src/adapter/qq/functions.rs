//! What each function sends: its route from the generated table ([`ROUTES`]), its parameters
//! placed where the platform wants them (the route's `{placeholders}`, the query string for
//! `GET` and `DELETE`, a JSON body otherwise), with the few renames and reshapings qg_botsdk
//! does (`type_` -> `type`, `mute_members`' `user_id` -> `user_ids`, ...), and the lists it
//! fetches page by page. Message sends are composed in [`super::message`].

use serde_json::{Map, Value, json};

use super::actions::ROUTES;
use super::rest::{Body, Request};

/// The `METHOD /path` of `action`, `""` for the SDK-local ones, `None` when there is no such
/// function.
pub fn route(action: &str) -> Option<&'static str> {
    ROUTES.iter().find(|(name, _)| *name == action).map(|(_, route)| *route)
}

/// How a list that comes in pages is fetched whole, as qg_botsdk does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// `?after=<last id>&limit=<n>` until a page is empty (or, with `short_ends`, shorter than
    /// `limit`); items are told apart by `id_at` (a JSON pointer), and a page with nothing new
    /// ends the walk.
    After {
        /// Page size.
        limit: u32,
        /// Where an item's id is.
        id_at: &'static str,
        /// Whether a short page is the last (guilds); members pages may be short before the end
        /// (the docs: page until an empty answer).
        short_ends: bool,
    },
    /// `?start_index=<next>&limit=400`, answered `{data, next}` until `next` is empty.
    StartIndex,
    /// `?cookie=<cookie>&limit=50`, answered `{users, cookie, is_end}` until `is_end`.
    Cookie,
    /// The same request again until the answer says `is_finish` (its `threads` collected).
    UntilFinished,
}

/// The paging of `action`, if its list comes in pages.
pub fn paging(action: &str) -> Option<Paging> {
    Some(match action {
        "get_bot_guilds" => Paging::After { limit: 100, id_at: "/id", short_ends: true },
        "get_guild_members" => Paging::After { limit: 400, id_at: "/user/id", short_ends: false },
        "get_role_members" => Paging::StartIndex,
        "get_reaction_users" => Paging::Cookie,
        "get_threads" => Paging::UntilFinished,
        _ => return None,
    })
}

/// Pages fetched at most for one list (a server that never says "done" cannot loop us).
pub const MAX_PAGES: usize = 1000;

/// Items gathered at most for one list (a server cannot make one call hold unbounded memory).
pub const MAX_ITEMS: usize = 200_000;

/// The SDK's parameter names that differ from the wire's (Python keywords get a `_`).
fn wire_name(name: &str) -> &str {
    match name {
        "type_" => "type",
        "id_" => "id",
        "format_" => "format",
        other => other,
    }
}

/// Builds the request of a function that is neither SDK-local nor a message send, from its
/// checked parameters.
pub fn request(action: &str, params: Value) -> Result<Request, String> {
    let route = route(action).filter(|r| !r.is_empty()).ok_or_else(|| format!("`{action}` has no REST route"))?;
    let Value::Object(given) = params else { return Err("parameters must be a map".into()) };
    let mut params: Map<String, Value> = given.into_iter().map(|(k, v)| (wire_name(&k).to_owned(), v)).collect();
    params.retain(|_, v| !v.is_null());
    match action {
        // Without a message id, every announcement goes (qg_botsdk's default).
        "delete_announce" => drop(params.entry("message_id").or_insert_with(|| json!("all"))),
        // The platform requires `code`; qg_botsdk defaults it to 0, success.
        "callback_interactions" => drop(params.entry("code").or_insert_with(|| json!(0))),
        _ => {}
    }
    let route = match action {
        // One function, two routes: the scope of the upload is the chat it names.
        "upload_media" => match (params.remove("user_openid"), params.remove("group_openid")) {
            (Some(user), None) => {
                params.insert("openid".into(), user);
                "POST /v2/users/{openid}/files"
            }
            (None, Some(group)) => {
                params.insert("group_openid".into(), group);
                "POST /v2/groups/{group_openid}/files"
            }
            _ => return Err("give exactly one of `user_openid` and `group_openid`".into()),
        },
        _ => route,
    };
    let (method, path) = route.split_once(' ').ok_or_else(|| format!("bad route {route}"))?;
    let method = reqwest::Method::from_bytes(method.as_bytes()).map_err(|_| format!("bad route {route}"))?;
    let path = super::rest::fill_route(path, &mut params)?;
    reshape(action, &mut params);
    let mut query = Vec::new();
    let body = if method == reqwest::Method::GET || method == reqwest::Method::DELETE {
        // These take a JSON body even on GET and DELETE (the docs and qg_botsdk agree).
        if matches!(action, "get_schedules" | "delete_member" | "delete_role_member") && !params.is_empty() {
            Body::Json(Value::Object(params))
        } else {
            query = params.into_iter().map(|(k, v)| (k, query_value(&v))).collect();
            Body::None
        }
    } else {
        Body::Json(Value::Object(params))
    };
    Ok(Request { method, path, query, body })
}

/// The platform's shapes where they differ from a flat copy of the parameters.
fn reshape(action: &str, params: &mut Map<String, Value>) {
    match action {
        "mute_members" => {
            let ids = match params.remove("user_id") {
                Some(Value::Array(ids)) => ids,
                Some(one) => vec![one],
                None => Vec::new(),
            };
            params.insert("user_ids".into(), Value::Array(ids));
        }
        "create_role_member" | "delete_role_member" => {
            // Role 5 (channel admin) names its channel as `{channel: {id}}`.
            if let Some(id) = params.remove("channel_id") {
                params.insert("channel".into(), json!({ "id": id }));
            }
        }
        "create_dm_guild" => {
            if let Some(id) = params.remove("target_id") {
                params.insert("recipient_id".into(), id);
            }
            if let Some(id) = params.remove("guild_id") {
                params.insert("source_guild_id".into(), id);
            }
        }
        "create_schedule" | "patch_schedule" => {
            let mut schedule = Map::new();
            for (from, to) in [
                ("schedule_name", "name"),
                ("start_timestamp", "start_timestamp"),
                ("end_timestamp", "end_timestamp"),
                ("jump_channel_id", "jump_channel_id"),
                ("remind_type", "remind_type"),
            ] {
                if let Some(v) = params.remove(from) {
                    schedule.insert(to.into(), as_string(v));
                }
            }
            params.insert("schedule".into(), Value::Object(schedule));
        }
        "create_permission_demand" => {
            // `api` is the API's identity as the platform lists it: `{path, method}`.
            if let Some(api) = params.remove("api") {
                params.insert("api_identify".into(), api);
            }
        }
        _ => {}
    }
    // Timestamps and durations the platform takes as strings.
    for key in ["mute_end_timestamp", "mute_seconds"] {
        if let Some(v) = params.remove(key) {
            params.insert(key.into(), as_string(v));
        }
    }
}

fn as_string(v: Value) -> Value {
    match v {
        Value::Number(n) => Value::String(n.to_string()),
        other => other,
    }
}

fn query_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(action: &str, params: Value) -> Request {
        request(action, params).unwrap()
    }

    #[test]
    fn parameters_go_to_the_route_the_query_or_the_body() {
        let r = req("delete_msg", json!({"channel_id": "C", "message_id": "M", "hidetip": true}));
        assert_eq!((r.method.as_str(), r.path.as_str()), ("DELETE", "/channels/C/messages/M"));
        assert_eq!(r.query, [("hidetip".to_owned(), "true".to_owned())]);
        let r = req("create_reaction", json!({"channel_id": "C", "message_id": "M", "type_": 1, "id_": "4"}));
        assert_eq!(r.path, "/channels/C/messages/M/reactions/1/4");
        let r = req("mute_members", json!({"guild_id": "G", "user_id": ["a", "b"], "mute_seconds": 60}));
        assert_eq!(r.body, Body::Json(json!({"user_ids": ["a", "b"], "mute_seconds": "60"})));
        let r = req("upload_media", json!({"group_openid": "G", "file_type": 1, "url": "u", "srv_send_msg": false}));
        assert_eq!(r.path, "/v2/groups/G/files");
        assert!(request("upload_media", json!({"file_type": 1})).unwrap_err().contains("exactly one"));
        let r = req("callback_interactions", json!({"interaction_id": "I"}));
        assert_eq!((r.method.as_str(), r.path.as_str()), ("PUT", "/interactions/I"));
        assert_eq!(r.body, Body::Json(json!({"code": 0})), "the code the platform requires");
    }
}
