//! The official platform's WebSocket gateway as an explicit state machine: what the connection
//! is doing, and what each thing that happens to it (a frame, a close code, a due heartbeat)
//! makes it do next. The socket loop only carries out the [`Action`]s; the transitions are pure
//! and tested here.
//!
//! Hello (op 10) -> Identify (op 2) or, with a session to keep, Resume (op 6) -> READY or
//! RESUMED -> heartbeats (op 1) at the announced interval, each answered by op 11. A dropped
//! connection resumes with the session id and the last sequence number; the platform's close
//! codes say when that cannot work (4006, 4007, 4900-4913 and the other codes of 4000-4999 the
//! platform names no remedy for: identify afresh), when the session only expired (4009: resume),
//! when the token must be renewed first (4004), when to wait (4008), and when retrying is
//! pointless (4010-4015: wrong shard, intents or version; the bot is offline or banned).

use std::time::Duration;

/// A session that can be resumed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The id READY gave.
    pub id: String,
    /// The last dispatch sequence number seen.
    pub seq: u64,
}

/// Where the connection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// No socket; `session` is kept when it can be resumed.
    Disconnected {
        /// The session to resume, if any.
        session: Option<Session>,
    },
    /// The socket is open; waiting for Hello.
    AwaitingHello {
        /// The session to resume, if any.
        session: Option<Session>,
    },
    /// Identify sent; waiting for READY.
    Identifying {
        /// The heartbeat interval Hello announced.
        heartbeat: Duration,
    },
    /// Resume sent; waiting for RESUMED (missed events are replayed before it).
    Resuming {
        /// The session being resumed (its `seq` advances with the replay).
        session: Session,
        /// The heartbeat interval.
        heartbeat: Duration,
    },
    /// Receiving events.
    Ready {
        /// The session.
        session: Session,
        /// The heartbeat interval.
        heartbeat: Duration,
        /// Whether the last heartbeat was acknowledged (a second one due without an ack means
        /// the connection is dead).
        acked: bool,
    },
    /// Retrying cannot help; the reason is logged once.
    Stopped {
        /// Why.
        reason: String,
    },
}

/// What happened to the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The socket opened.
    Opened,
    /// op 10 with `d.heartbeat_interval` (ms).
    Hello(Duration),
    /// op 0 READY with its session id and sequence number.
    ReadyEvent {
        /// `d.session_id`.
        session_id: String,
        /// `s`.
        seq: u64,
    },
    /// op 0 RESUMED.
    Resumed,
    /// Any other op 0, with its sequence number.
    Dispatch(u64),
    /// op 11.
    HeartbeatAck,
    /// op 7: the platform asks for a reconnect (resuming).
    Reconnect,
    /// op 9: the identify or resume was refused.
    InvalidSession,
    /// The socket closed, with the close code when there was one.
    Closed(Option<u16>),
    /// The heartbeat interval passed.
    HeartbeatDue,
}

/// What the socket loop must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send op 2 Identify.
    Identify,
    /// Send op 6 Resume with this session.
    Resume(Session),
    /// Send op 1 with the last sequence number (none before the first dispatch).
    Heartbeat(Option<u64>),
    /// Start sending heartbeats at this interval.
    StartHeartbeat(Duration),
    /// Close the socket (if open) and connect again after the usual back-off.
    Reconnect,
    /// Like [`Action::Reconnect`], after renewing the AccessToken.
    RenewTokenAndReconnect,
    /// Like [`Action::Reconnect`], after waiting out a rate limit.
    ReconnectLater,
    /// Give up; log the reason.
    Stop(String),
    /// Log that the platform refused an Identify (op 9 before READY), which repeats while the
    /// bot asks for intents it may not have.
    WarnIdentifyRefused,
}

/// What a close code means for the next connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseMeaning {
    /// Resume the session.
    Resume,
    /// The session is gone: identify afresh.
    Identify,
    /// The token was refused: renew it, then identify.
    RenewToken,
    /// Rate limited: wait, then resume.
    Wait,
    /// Retrying cannot help.
    Fatal(&'static str),
}

/// The meaning of a close code (`None`: the socket dropped without one).
pub fn close_meaning(code: Option<u16>) -> CloseMeaning {
    match code {
        Some(4004) => CloseMeaning::RenewToken,
        // "Connection expired: reconnect and resume" (the platform's error table; botgo resumes).
        Some(4009) => CloseMeaning::Resume,
        Some(4008) => CloseMeaning::Wait,
        Some(4010) => CloseMeaning::Fatal("4010: invalid shard (check the shard settings)"),
        Some(4011) => CloseMeaning::Fatal("4011: too many guilds for one shard (use more shards)"),
        Some(4012) => CloseMeaning::Fatal("4012: invalid gateway version"),
        Some(4013) => CloseMeaning::Fatal("4013: invalid intents (check the intents setting)"),
        Some(4014) => CloseMeaning::Fatal("4014: intents not permitted for this bot (ask the platform, or drop them)"),
        Some(4914) => CloseMeaning::Fatal("4914: the bot is offline or only allowed in its sandbox"),
        Some(4915) => CloseMeaning::Fatal("4915: the bot is banned"),
        // 4006, 4007, 4900-4913 and "other errors": the session cannot go on; identify afresh.
        Some(4000..=4999) => CloseMeaning::Identify,
        // 1000/1001 and anything else, or no code at all: the connection dropped; resume.
        _ => CloseMeaning::Resume,
    }
}

impl State {
    /// The state before the first connection.
    pub fn new() -> State {
        State::Disconnected { session: None }
    }

    /// The session that survives this state, if any.
    fn session(&self) -> Option<Session> {
        match self {
            State::Disconnected { session } | State::AwaitingHello { session } => session.clone(),
            State::Resuming { session, .. } | State::Ready { session, .. } => Some(session.clone()),
            State::Identifying { .. } | State::Stopped { .. } => None,
        }
    }

    /// The next state and what to do, given `input`.
    pub fn step(self, input: Input) -> (State, Vec<Action>) {
        use Action as A;
        match (self, input) {
            (stopped @ State::Stopped { .. }, _) => (stopped, vec![]),
            (State::Disconnected { session }, Input::Opened) => (State::AwaitingHello { session }, vec![]),
            (State::AwaitingHello { session: Some(session) }, Input::Hello(heartbeat)) => (
                State::Resuming { session: session.clone(), heartbeat },
                vec![A::Resume(session), A::StartHeartbeat(heartbeat)],
            ),
            (State::AwaitingHello { session: None }, Input::Hello(heartbeat)) => {
                (State::Identifying { heartbeat }, vec![A::Identify, A::StartHeartbeat(heartbeat)])
            }
            (State::Identifying { heartbeat }, Input::ReadyEvent { session_id, seq }) => {
                (State::Ready { session: Session { id: session_id, seq }, heartbeat, acked: true }, vec![])
            }
            (State::Resuming { session, heartbeat }, Input::Resumed) => {
                (State::Ready { session, heartbeat, acked: true }, vec![])
            }
            // Missed events replayed during a resume, and every event once ready.
            (State::Resuming { mut session, heartbeat }, Input::Dispatch(seq)) => {
                session.seq = session.seq.max(seq);
                (State::Resuming { session, heartbeat }, vec![])
            }
            (State::Ready { mut session, heartbeat, acked }, Input::Dispatch(seq)) => {
                session.seq = session.seq.max(seq);
                (State::Ready { session, heartbeat, acked }, vec![])
            }
            (State::Ready { session, heartbeat, .. }, Input::HeartbeatAck) => {
                (State::Ready { session, heartbeat, acked: true }, vec![])
            }
            (State::Ready { session, heartbeat, acked: true }, Input::HeartbeatDue) => {
                let seq = session.seq;
                (State::Ready { session, heartbeat, acked: false }, vec![A::Heartbeat(Some(seq))])
            }
            // No ack since the last heartbeat: the connection is dead; resume on a new one.
            (State::Ready { session, .. }, Input::HeartbeatDue) => {
                (State::Disconnected { session: Some(session) }, vec![A::Reconnect])
            }
            (state @ (State::Identifying { .. } | State::Resuming { .. }), Input::HeartbeatDue) => {
                let seq = state.session().map(|s| s.seq);
                (state, vec![A::Heartbeat(seq)])
            }
            (state, Input::Reconnect) => (State::Disconnected { session: state.session() }, vec![A::Reconnect]),
            // A refused identify or resume: start over without the session.
            (State::Identifying { .. }, Input::InvalidSession) => {
                (State::Disconnected { session: None }, vec![A::WarnIdentifyRefused, A::Reconnect])
            }
            (_, Input::InvalidSession) => (State::Disconnected { session: None }, vec![A::Reconnect]),
            (state, Input::Closed(code)) => match close_meaning(code) {
                CloseMeaning::Resume => (State::Disconnected { session: state.session() }, vec![A::Reconnect]),
                CloseMeaning::Identify => (State::Disconnected { session: None }, vec![A::Reconnect]),
                CloseMeaning::RenewToken => (State::Disconnected { session: None }, vec![A::RenewTokenAndReconnect]),
                CloseMeaning::Wait => (State::Disconnected { session: state.session() }, vec![A::ReconnectLater]),
                CloseMeaning::Fatal(reason) => (State::Stopped { reason: reason.into() }, vec![A::Stop(reason.into())]),
            },
            // Anything else is out of order (a READY while resuming, a second Hello): keep the
            // state; the socket loop logs it.
            (state, _) => (state, vec![]),
        }
    }
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HB: Duration = Duration::from_millis(41_250);

    fn run(mut state: State, inputs: Vec<Input>) -> (State, Vec<Action>) {
        let mut actions = Vec::new();
        for input in inputs {
            let (next, done) = state.step(input);
            state = next;
            actions.extend(done);
        }
        (state, actions)
    }

    #[test]
    fn a_first_connection_identifies_and_heartbeats_with_the_last_seq() {
        let (state, actions) = run(
            State::new(),
            vec![
                Input::Opened,
                Input::Hello(HB),
                Input::ReadyEvent { session_id: "s1".into(), seq: 1 },
                Input::Dispatch(2),
                Input::HeartbeatDue,
                Input::HeartbeatAck,
                Input::Dispatch(5),
                Input::HeartbeatDue,
            ],
        );
        assert_eq!(
            actions,
            [Action::Identify, Action::StartHeartbeat(HB), Action::Heartbeat(Some(2)), Action::Heartbeat(Some(5))]
        );
        assert!(matches!(state, State::Ready { acked: false, .. }));
    }

    #[test]
    fn a_drop_resumes_with_session_and_seq_and_the_replay_advances_it() {
        let ready = State::Ready { session: Session { id: "s1".into(), seq: 7 }, heartbeat: HB, acked: true };
        let (state, actions) = run(
            ready,
            vec![
                Input::Closed(None),
                Input::Opened,
                Input::Hello(HB),
                Input::Dispatch(8),
                Input::Dispatch(9),
                Input::Resumed,
            ],
        );
        let session = Session { id: "s1".into(), seq: 7 };
        assert_eq!(actions, [Action::Reconnect, Action::Resume(session), Action::StartHeartbeat(HB)]);
        assert_eq!(state, State::Ready { session: Session { id: "s1".into(), seq: 9 }, heartbeat: HB, acked: true });
    }

    #[test]
    fn a_missed_heartbeat_ack_reconnects_and_resumes() {
        let ready = State::Ready { session: Session { id: "s1".into(), seq: 3 }, heartbeat: HB, acked: true };
        let (state, actions) = run(ready, vec![Input::HeartbeatDue, Input::HeartbeatDue]);
        assert_eq!(actions, [Action::Heartbeat(Some(3)), Action::Reconnect]);
        assert_eq!(state, State::Disconnected { session: Some(Session { id: "s1".into(), seq: 3 }) });
    }

    #[test]
    fn close_codes_decide_resume_identify_renew_wait_or_stop() {
        let ready = || State::Ready { session: Session { id: "s".into(), seq: 1 }, heartbeat: HB, acked: true };
        let kept = Some(Session { id: "s".into(), seq: 1 });
        for (code, state, action) in [
            (Some(1000), State::Disconnected { session: kept.clone() }, Action::Reconnect),
            (None, State::Disconnected { session: kept.clone() }, Action::Reconnect),
            (Some(4006), State::Disconnected { session: None }, Action::Reconnect),
            (Some(4007), State::Disconnected { session: None }, Action::Reconnect),
            (Some(4009), State::Disconnected { session: kept.clone() }, Action::Reconnect),
            (Some(4905), State::Disconnected { session: None }, Action::Reconnect),
            (Some(4000), State::Disconnected { session: None }, Action::Reconnect),
            (Some(4003), State::Disconnected { session: None }, Action::Reconnect),
            (Some(1006), State::Disconnected { session: kept.clone() }, Action::Reconnect),
            (Some(4004), State::Disconnected { session: None }, Action::RenewTokenAndReconnect),
            (Some(4008), State::Disconnected { session: kept.clone() }, Action::ReconnectLater),
        ] {
            assert_eq!(ready().step(Input::Closed(code)), (state, vec![action]), "{code:?}");
        }
        let (state, actions) = ready().step(Input::Closed(Some(4014)));
        assert!(matches!(&state, State::Stopped { reason } if reason.contains("4014")));
        assert!(matches!(&actions[..], [Action::Stop(_)]));
        assert_eq!(state.clone().step(Input::Opened).0, state, "stopped stays stopped");
    }

    #[test]
    fn a_refused_resume_identifies_afresh_and_op_7_resumes() {
        let resuming = State::Resuming { session: Session { id: "s".into(), seq: 4 }, heartbeat: HB };
        let (state, actions) = resuming.step(Input::InvalidSession);
        assert_eq!((state, actions), (State::Disconnected { session: None }, vec![Action::Reconnect]));
        // A refused identify is said: it repeats while the intents asked for are not the bot's.
        let (state, actions) = State::Identifying { heartbeat: HB }.step(Input::InvalidSession);
        assert_eq!(
            (state, actions),
            (State::Disconnected { session: None }, vec![Action::WarnIdentifyRefused, Action::Reconnect])
        );
        let ready = State::Ready { session: Session { id: "s".into(), seq: 4 }, heartbeat: HB, acked: true };
        let (state, _) = run(ready, vec![Input::Reconnect, Input::Opened, Input::Hello(HB)]);
        assert!(matches!(state, State::Resuming { .. }));
    }
}
