//! What differs by channel type, in one place. Each capability is an exhaustive `match` on
//! the channel's kind, so a new kind of channel does not compile until every behaviour below
//! is decided for it, and the pipeline and the outbox ask the kind instead of naming types.

use std::time::Duration;

use crate::config::ChannelKind;

impl ChannelKind {
    /// Whether alerts that fire together go out as one message. PagerDuty incidents and
    /// Alertmanager alerts are one per alert.
    pub fn groups(&self) -> bool {
        match self {
            ChannelKind::Slack { .. } | ChannelKind::Webhook { .. } | ChannelKind::Email(_) => true,
            ChannelKind::PagerDuty { .. } | ChannelKind::Alertmanager { .. } => false,
        }
    }

    /// Whether an unacknowledged alert is repeated here every `repeat_interval`. PagerDuty
    /// keeps its own incident and Alertmanager gets its keep-alive re-sends: a reminder would
    /// add nothing there.
    pub fn reminds(&self) -> bool {
        match self {
            ChannelKind::Slack { .. } | ChannelKind::Webhook { .. } | ChannelKind::Email(_) => true,
            ChannelKind::PagerDuty { .. } | ChannelKind::Alertmanager { .. } => false,
        }
    }

    /// Whether an acknowledgement is sent here (PagerDuty acknowledges its incident; other
    /// channels hear nothing new).
    pub fn hears_acknowledgement(&self) -> bool {
        match self {
            ChannelKind::PagerDuty { .. } => true,
            ChannelKind::Slack { .. }
            | ChannelKind::Webhook { .. }
            | ChannelKind::Email(_)
            | ChannelKind::Alertmanager { .. } => false,
        }
    }

    /// How often a firing alert is sent again to keep it alive: Alertmanager forgets an alert
    /// that is not re-sent.
    pub fn keep_alive(&self) -> Option<Duration> {
        match self {
            ChannelKind::Alertmanager {
                resend_interval, ..
            } => Some(*resend_interval),
            ChannelKind::Slack { .. }
            | ChannelKind::Webhook { .. }
            | ChannelKind::Email(_)
            | ChannelKind::PagerDuty { .. } => None,
        }
    }

    /// The least time between two messages: Slack allows one per second per webhook,
    /// PagerDuty about 120 events a minute per integration key.
    pub fn min_gap(&self) -> Duration {
        match self {
            ChannelKind::Slack { .. } => Duration::from_secs(1),
            ChannelKind::PagerDuty { .. } => Duration::from_millis(500),
            ChannelKind::Webhook { .. }
            | ChannelKind::Email(_)
            | ChannelKind::Alertmanager { .. } => Duration::ZERO,
        }
    }
}
