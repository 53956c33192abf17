//! The official QQ bot platform (seed 000, seeds 002–004). Built so far, each tested on its
//! own: the webhook signatures ([`sign`]), the AccessToken ([`token`]) and the gateway's state
//! machine ([`gateway`]). Not registered as an adapter yet: the REST functions, the socket and
//! webhook transports, the events and the reply layer are still to come, so no `[[bot]]` can
//! use this protocol.

pub mod gateway;
pub mod sign;
pub mod token;
