//! The official QQ bot platform (seed 000, seeds 002–004). Built so far: the webhook
//! signatures ([`sign`]). The adapter itself (REST calls, token, gateway, events, the reply
//! layer) is not registered yet.

pub mod sign;
pub mod token;
