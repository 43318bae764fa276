//! `[[channels]]`: where notifications go (Slack, webhook, email, Alertmanager, PagerDuty),
//! each type as written, validated and defaulted.
//!
//! Adding a channel type: a variant of [`ChannelTag`], its raw struct and validation here, a
//! variant of [`ChannelKind`], and its sender in `notify/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::Secret;
use super::fields::{
    check_name, duration_field, headers_field, is_loopback_name, plaintext_refused, secret_field,
};
use super::problems::{Keyword, Problems, Site, declared_names, element, keywords, tables, tag};

// Defaults; docs/configuration.md lists the same.

fn pagerduty_events_url() -> &'static str {
    "https://events.pagerduty.com"
}
fn pagerduty_source() -> &'static str {
    "sloguard"
}
fn alertmanager_resend_interval() -> Duration {
    Duration::from_secs(60)
}

keywords! {
    /// The `type` of a `[[channels]]` entry.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum ChannelTag {
        Slack = "slack",
        Webhook = "webhook",
        Email = "email",
        PagerDuty = "pagerduty",
        Alertmanager = "alertmanager",
    }
}

/// `[[channels]]` with `type = "slack"`: a Slack incoming webhook.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlack {
    /// The tag, `slack`, already read by validation.
    #[serde(rename = "type")]
    pub _tag: serde::de::IgnoredAny,
    /// Unique channel name used by `[routing]` and rules.
    pub name: String,
    /// The webhook URL, a secret: a literal, `env:NAME`, or use `webhook_url_file`.
    pub webhook_url: Option<String>,
    /// A file whose content is the webhook URL.
    pub webhook_url_file: Option<String>,
}

/// `[[channels]]` with `type = "webhook"`: a generic JSON webhook.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    /// The tag, `webhook`, already read by validation.
    #[serde(rename = "type")]
    pub _tag: serde::de::IgnoredAny,
    /// Unique channel name used by `[routing]` and rules.
    pub name: String,
    /// The URL to POST to (a secret, like `webhook_url`).
    pub url: Option<String>,
    /// A file whose content is the URL.
    pub url_file: Option<String>,
    /// Extra request headers; values may be `env:NAME` secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[[channels]]` with `type = "email"`: mail through an SMTP server.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEmail {
    /// The tag, `email`, already read by validation.
    #[serde(rename = "type")]
    pub _tag: serde::de::IgnoredAny,
    /// Unique channel name used by `[routing]` and rules.
    pub name: String,
    /// The SMTP server's host name.
    pub smtp_host: String,
    /// The SMTP port; default by `tls`: 587 for `starttls`, 465 for `tls`, 25 for `none`.
    pub smtp_port: Option<u16>,
    /// `starttls` (default), `tls` (implicit TLS) or `none`.
    pub tls: Option<String>,
    /// The SMTP user name, when the server wants authentication.
    pub username: Option<String>,
    /// The SMTP password, a secret (`env:NAME`), or use `password_file`.
    pub password: Option<String>,
    /// A file whose content is the SMTP password.
    pub password_file: Option<String>,
    /// The sender, e.g. `sloguard <alerts@example.com>`.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
}

/// `[[channels]]` with `type = "alertmanager"`: push alerts to an Alertmanager.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    /// The tag, `alertmanager`, already read by validation.
    #[serde(rename = "type")]
    pub _tag: serde::de::IgnoredAny,
    /// Unique channel name used by `[routing]` and rules.
    pub name: String,
    /// The Alertmanager's base URL, e.g. `http://127.0.0.1:9093`.
    pub url: String,
    /// Extra request headers (basic or bearer auth); values may be `env:NAME` secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How often a firing alert is sent again. Default `1m`.
    pub resend_interval: Option<String>,
}

/// `[[channels]]` with `type = "pagerduty"`: PagerDuty Events API v2.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPagerDuty {
    /// The tag, `pagerduty`, already read by validation.
    #[serde(rename = "type")]
    pub _tag: serde::de::IgnoredAny,
    /// Unique channel name used by `[routing]` and rules.
    pub name: String,
    /// The integration's routing key, a secret (`env:NAME`), or use `routing_key_file`.
    pub routing_key: Option<String>,
    /// A file whose content is the routing key.
    pub routing_key_file: Option<String>,
    /// The Events API's base URL.
    pub events_url: Option<String>,
    /// The `source` of events (this ops box).
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub name: String,
    pub kind: ChannelKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ChannelKind {
    Slack {
        webhook_url: Secret,
    },
    Webhook {
        url: Secret,
        headers: Vec<(String, Secret)>,
    },
    Email(EmailChannel),
    Alertmanager {
        url: url::Url,
        headers: Vec<(String, Secret)>,
        resend_interval: Duration,
    },
    PagerDuty {
        routing_key: Secret,
        events_url: url::Url,
        source: String,
    },
}

impl ChannelKind {
    pub fn type_name(&self) -> &'static str {
        match self {
            ChannelKind::Slack { .. } => "slack",
            ChannelKind::Webhook { .. } => "webhook",
            ChannelKind::Email(_) => "email",
            ChannelKind::Alertmanager { .. } => "alertmanager",
            ChannelKind::PagerDuty { .. } => "pagerduty",
        }
    }
}

keywords! {
    /// How an SMTP connection is secured.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum SmtpTls {
        /// Plain connection upgraded with STARTTLS, which is required.
        StartTls = "starttls",
        /// TLS from the first byte (SMTPS).
        Tls = "tls",
        /// No encryption (a local relay).
        None = "none",
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmailChannel {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    pub from: String,
    pub to: Vec<String>,
}

/// `[[channels]]`: the names declared (valid or not, so that a broken channel does not
/// cause "no channel named" problems elsewhere) and the valid channels by name.
pub(super) fn channels(
    problems: &mut Problems<'_>,
    value: Option<&Spanned<DeValue<'_>>>,
    base_dir: &Path,
) -> (BTreeSet<String>, BTreeMap<String, Channel>) {
    let names = declared_names(problems, value, "channels", "channel");
    let mut channels = BTreeMap::new();
    for (value, site) in tables(problems, value, "channels") {
        let ch = match tag(problems, &site, "type") {
            Some(ChannelTag::Slack) => element::<RawSlack>(problems, value, &site)
                .and_then(|raw| slack(problems, raw, &site, base_dir)),
            Some(ChannelTag::Email) => element::<RawEmail>(problems, value, &site)
                .and_then(|raw| email(problems, raw, &site, base_dir)),
            Some(ChannelTag::Alertmanager) => element::<RawAlertmanager>(problems, value, &site)
                .and_then(|raw| alertmanager(problems, raw, &site)),
            Some(ChannelTag::PagerDuty) => element::<RawPagerDuty>(problems, value, &site)
                .and_then(|raw| pagerduty(problems, raw, &site, base_dir)),
            Some(ChannelTag::Webhook) => element::<RawWebhook>(problems, value, &site)
                .and_then(|raw| webhook(problems, raw, &site, base_dir)),
            None => None,
        };
        if let Some(ch) = ch {
            channels.entry(ch.name.clone()).or_insert(ch);
        }
    }
    (names, channels)
}

fn slack(
    problems: &mut Problems<'_>,
    raw: RawSlack,
    site: &Site<'_, '_>,
    base_dir: &Path,
) -> Option<Channel> {
    let name_ok = check_name(problems, site, &raw.name);
    let url = channel_url(
        problems,
        site,
        "webhook_url",
        raw.webhook_url.as_deref(),
        raw.webhook_url_file.as_deref(),
        base_dir,
    )?;
    name_ok.then_some(Channel {
        name: raw.name,
        kind: ChannelKind::Slack { webhook_url: url },
    })
}

fn webhook(
    problems: &mut Problems<'_>,
    raw: RawWebhook,
    site: &Site<'_, '_>,
    base_dir: &Path,
) -> Option<Channel> {
    let name_ok = check_name(problems, site, &raw.name);
    let url = channel_url(
        problems,
        site,
        "url",
        raw.url.as_deref(),
        raw.url_file.as_deref(),
        base_dir,
    );
    let headers = headers_field(problems, site, raw.headers);
    let url = url?;
    name_ok.then_some(Channel {
        name: raw.name,
        kind: ChannelKind::Webhook { url, headers },
    })
}

fn email(
    problems: &mut Problems<'_>,
    raw: RawEmail,
    site: &Site<'_, '_>,
    base_dir: &Path,
) -> Option<Channel> {
    let before = problems.list.len();
    check_name(problems, site, &raw.name);
    let tls = match raw.tls.as_deref() {
        None => SmtpTls::StartTls,
        Some(text) => SmtpTls::parse(text).unwrap_or_else(|| {
            problems.push(
                Some(site.span_of("tls")),
                site.field("tls"),
                format!("`{text}` is not a TLS mode; use `starttls`, `tls` or `none`"),
            );
            SmtpTls::StartTls
        }),
    };
    let port = raw.smtp_port.unwrap_or(match tls {
        SmtpTls::StartTls => 587,
        SmtpTls::Tls => 465,
        SmtpTls::None => 25,
    });
    if raw.smtp_host.trim().is_empty() {
        problems.push(
            Some(site.span_of("smtp_host")),
            site.field("smtp_host"),
            "must not be empty",
        );
    }
    let password = match (&raw.password, &raw.password_file) {
        (None, None) => None,
        (p, f) => secret_field(
            problems,
            site,
            "password",
            p.as_deref(),
            f.as_deref(),
            base_dir,
        ),
    };
    if password.is_some() && tls == SmtpTls::None && !is_loopback_name(&raw.smtp_host) {
        problems.push(
            Some(site.span_of("tls")),
            site.field("tls"),
            format!(
                "`tls = \"none\"` would send the password unencrypted to `{}`; use `starttls` \
                 or `tls` (authentication without TLS is taken for a relay on this machine only)",
                raw.smtp_host
            ),
        );
    }
    if password.is_some() != raw.username.is_some() {
        problems.push(
            Some(site.span.clone()),
            site.field(if raw.username.is_some() {
                "password"
            } else {
                "username"
            }),
            "authentication needs both `username` and `password` (or neither)",
        );
    }
    if raw.from.parse::<lettre::message::Mailbox>().is_err() {
        problems.push(
            Some(site.span_of("from")),
            site.field("from"),
            format!(
                "`{}` is not an email address; write e.g. `sloguard <alerts@example.com>`",
                raw.from
            ),
        );
    }
    if raw.to.is_empty() {
        problems.push(
            Some(site.span_of("to")),
            site.field("to"),
            "list at least one recipient",
        );
    }
    for (i, to) in raw.to.iter().enumerate() {
        if to.parse::<lettre::message::Mailbox>().is_err() {
            problems.push(
                Some(site.span_of("to")),
                site.field(&format!("to[{i}]")),
                format!("`{to}` is not an email address"),
            );
        }
    }
    if problems.list.len() > before {
        return None;
    }
    Some(Channel {
        name: raw.name,
        kind: ChannelKind::Email(EmailChannel {
            host: raw.smtp_host,
            port,
            tls,
            username: raw.username,
            password,
            from: raw.from,
            to: raw.to,
        }),
    })
}

fn alertmanager(
    problems: &mut Problems<'_>,
    raw: RawAlertmanager,
    site: &Site<'_, '_>,
) -> Option<Channel> {
    let before = problems.list.len();
    check_name(problems, site, &raw.name);
    let url = match url::Url::parse(&raw.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        _ => {
            problems.push(
                Some(site.span_of("url")),
                site.field("url"),
                format!("`{}` is not an http:// or https:// URL", raw.url),
            );
            None
        }
    };
    if let Some(u) = &url {
        plaintext_refused(
            problems,
            site,
            "url",
            u,
            "every alert (and any secret header)",
        );
    }
    let headers = headers_field(problems, site, raw.headers);
    let resend_interval = duration_field(
        problems,
        site,
        "resend_interval",
        raw.resend_interval.as_ref(),
        alertmanager_resend_interval(),
        Duration::from_secs(1),
    );
    if problems.list.len() > before {
        return None;
    }
    Some(Channel {
        name: raw.name,
        kind: ChannelKind::Alertmanager {
            url: url?,
            headers,
            resend_interval,
        },
    })
}

fn pagerduty(
    problems: &mut Problems<'_>,
    raw: RawPagerDuty,
    site: &Site<'_, '_>,
    base_dir: &Path,
) -> Option<Channel> {
    let before = problems.list.len();
    check_name(problems, site, &raw.name);
    let key = secret_field(
        problems,
        site,
        "routing_key",
        raw.routing_key.as_deref(),
        raw.routing_key_file.as_deref(),
        base_dir,
    );
    let events_text = raw.events_url.as_deref().unwrap_or(pagerduty_events_url());
    let events_url = match url::Url::parse(events_text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        _ => {
            problems.push(
                Some(site.span_of("events_url")),
                site.field("events_url"),
                format!("`{events_text}` is not an http:// or https:// URL"),
            );
            None
        }
    };
    if let Some(u) = &events_url {
        plaintext_refused(problems, site, "events_url", u, "the routing key");
    }
    if problems.list.len() > before {
        return None;
    }
    Some(Channel {
        name: raw.name,
        kind: ChannelKind::PagerDuty {
            routing_key: key?,
            events_url: events_url?,
            source: raw.source.unwrap_or_else(|| pagerduty_source().to_string()),
        },
    })
}

/// A channel's URL: a secret (`key` or `key_file`) holding an http(s) URL.
fn channel_url(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    key: &str,
    inline: Option<&str>,
    file: Option<&str>,
    base_dir: &Path,
) -> Option<Secret> {
    let url = secret_field(problems, site, key, inline, file, base_dir)?;
    secret_url(problems, site, key, &url).then_some(url)
}

/// Checks that a secret holds an http(s) URL, without ever quoting it.
fn secret_url(
    problems: &mut Problems<'_>,
    site: &Site<'_, '_>,
    key: &str,
    secret: &Secret,
) -> bool {
    let what = match secret.origin() {
        "inline" => "the URL".to_string(),
        origin => format!("the URL from {origin}"),
    };
    match url::Url::parse(secret.expose()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            !plaintext_refused(
                problems,
                site,
                key,
                &u,
                "the URL (a secret) and every alert",
            )
        }
        Ok(_) => {
            problems.push(
                Some(site.span_of(key)),
                site.field(key),
                format!("{what} must be an http:// or https:// URL"),
            );
            false
        }
        Err(e) => {
            problems.push(
                Some(site.span_of(key)),
                site.field(key),
                format!("{what} is not a valid URL ({e})"),
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use super::{ChannelKind, EmailChannel, SmtpTls};
    use crate::config::Secret;
    use crate::config::testing::{config, expect, expect_one};

    const EMAIL: &str = r#"[[channels]]
name = "mail"
type = "email"
smtp_host = "smtp.example.com"
from = "sloguard <alerts@example.com>"
to = ["ops@example.com"]
"#;

    #[test]
    fn each_type_as_written_with_its_defaults() {
        let c = config(&format!(
            r#"{EMAIL}
[[channels]]
name = "slack"
type = "slack"
webhook_url = "https://hooks.slack.example/T/B/x"

[[channels]]
name = "hook"
type = "webhook"
url = "http://127.0.0.1:9/hook"
headers = {{ Authorization = "Bearer x" }}

[[channels]]
name = "am"
type = "alertmanager"
url = "http://127.0.0.1:9093"

[[channels]]
name = "pd"
type = "pagerduty"
routing_key = "R0UTINGKEY"

[[channels]]
name = "relay"
type = "email"
smtp_host = "127.0.0.1"
tls = "none"
from = "a@example.com"
to = ["b@example.com"]
"#
        ));
        let kind = |name: &str| c.channels[name].kind.clone();
        assert_eq!(
            kind("mail"),
            ChannelKind::Email(EmailChannel {
                host: "smtp.example.com".into(),
                port: 587,
                tls: SmtpTls::StartTls,
                username: None,
                password: None,
                from: "sloguard <alerts@example.com>".into(),
                to: vec!["ops@example.com".into()],
            })
        );
        assert!(
            matches!(kind("relay"), ChannelKind::Email(e) if e.port == 25 && e.tls == SmtpTls::None)
        );
        assert_eq!(
            kind("slack"),
            ChannelKind::Slack {
                webhook_url: Secret::literal("https://hooks.slack.example/T/B/x")
            }
        );
        assert_eq!(
            kind("hook"),
            ChannelKind::Webhook {
                url: Secret::literal("http://127.0.0.1:9/hook"),
                headers: vec![("Authorization".into(), Secret::literal("Bearer x"))],
            }
        );
        assert_eq!(
            kind("am"),
            ChannelKind::Alertmanager {
                url: "http://127.0.0.1:9093".parse().unwrap(),
                headers: Vec::new(),
                resend_interval: Duration::from_secs(60),
            }
        );
        assert_eq!(
            kind("pd"),
            ChannelKind::PagerDuty {
                routing_key: Secret::literal("R0UTINGKEY"),
                events_url: "https://events.pagerduty.com".parse().unwrap(),
                source: "sloguard".into(),
            }
        );
        let types: Vec<(&str, &str)> = c
            .channels
            .iter()
            .map(|(name, ch)| (name.as_str(), ch.kind.type_name()))
            .collect();
        assert_eq!(
            types,
            [
                ("am", "alertmanager"),
                ("hook", "webhook"),
                ("mail", "email"),
                ("pd", "pagerduty"),
                ("relay", "email"),
                ("slack", "slack"),
            ]
        );
    }

    #[test]
    fn the_type_tag() {
        let types = "slack, webhook, email, pagerduty, alertmanager";
        expect(&[
            (
                "[[channels]]\nname = \"x\"\n",
                "channels[0].type",
                1,
                &format!("missing: set `type` to one of {types}"),
            ),
            (
                "[[channels]]\nname = \"x\"\ntype = \"teams\"\n",
                "channels[0].type",
                3,
                &format!("unknown type `teams`; expected one of: {types}"),
            ),
        ]);
    }

    #[test]
    fn problems() {
        let slack = "[[channels]]\nname = \"slack\"\ntype = \"slack\"\n";
        let webhook = "[[channels]]\nname = \"hook\"\ntype = \"webhook\"\n";
        let am = "[[channels]]\nname = \"am\"\ntype = \"alertmanager\"\n";
        let pd = "[[channels]]\nname = \"pd\"\ntype = \"pagerduty\"\nrouting_key = \"R\"\n";
        expect(&[
            (
                &format!("{slack}webhook_url = \"hooks.slack.example/x\"\n"),
                "channels[0].webhook_url",
                4,
                "the URL is not a valid URL (relative URL without a base)",
            ),
            (
                &format!("{slack}webhook_url = \"ftp://hooks.slack.example/x\"\n"),
                "channels[0].webhook_url",
                4,
                "the URL must be an http:// or https:// URL",
            ),
            (
                &format!("{webhook}url = \"mailto:ops@example.com\"\n"),
                "channels[0].url",
                4,
                "the URL must be an http:// or https:// URL",
            ),
            (
                &format!("{webhook}\n"),
                "channels[0].url",
                1,
                "missing: set `url` (a value or `env:NAME`) or `url_file`",
            ),
            (
                &EMAIL.replace("type = \"email\"", "type = \"email\"\ntls = \"ssl\""),
                "channels[0].tls",
                4,
                "`ssl` is not a TLS mode; use `starttls`, `tls` or `none`",
            ),
            (
                &EMAIL.replace("\"smtp.example.com\"", "\" \""),
                "channels[0].smtp_host",
                4,
                "must not be empty",
            ),
            (
                &format!("{EMAIL}username = \"sloguard\"\n"),
                "channels[0].password",
                1,
                "authentication needs both `username` and `password` (or neither)",
            ),
            (
                &format!("{EMAIL}password = \"secret\"\n"),
                "channels[0].username",
                1,
                "authentication needs both `username` and `password` (or neither)",
            ),
            (
                &EMAIL.replace("\"sloguard <alerts@example.com>\"", "\"sloguard\""),
                "channels[0].from",
                5,
                "`sloguard` is not an email address; write e.g. `sloguard <alerts@example.com>`",
            ),
            (
                &EMAIL.replace("[\"ops@example.com\"]", "[]"),
                "channels[0].to",
                6,
                "list at least one recipient",
            ),
            (
                &EMAIL.replace("[\"ops@example.com\"]", "[\"ops@example.com\", \"ops\"]"),
                "channels[0].to[1]",
                6,
                "`ops` is not an email address",
            ),
            (
                &format!("{am}url = \"127.0.0.1:9093\"\n"),
                "channels[0].url",
                4,
                "`127.0.0.1:9093` is not an http:// or https:// URL",
            ),
            (
                &format!("{am}url = \"http://127.0.0.1:9093\"\nresend_interval = \"0s\"\n"),
                "channels[0].resend_interval",
                5,
                "must be at least 1s",
            ),
            (
                &format!(
                    "{am}url = \"http://127.0.0.1:9093\"\nheaders = {{ \"Bad Name\" = \"x\" }}\n"
                ),
                "channels[0].headers.Bad Name",
                5,
                "not a valid HTTP header name",
            ),
            (
                &format!("{pd}events_url = \"events.pagerduty.com\"\n"),
                "channels[0].events_url",
                5,
                "`events.pagerduty.com` is not an http:// or https:// URL",
            ),
            (
                "[[channels]]\nname = \"pd\"\ntype = \"pagerduty\"\n",
                "channels[0].routing_key",
                1,
                "missing: set `routing_key` (a value or `env:NAME`) or `routing_key_file`",
            ),
            (
                &format!("{slack}webhook_url = \"http://127.0.0.1:9/\"\n")
                    .replace("\"slack\"\ntype", "\"#slack\"\ntype"),
                "channels[0].name",
                2,
                "`#slack` is not a valid name",
            ),
        ]);
    }

    /// A secret (a webhook URL, a routing key, a password) never crosses the network in
    /// clear: plain http:// and SMTP without TLS are taken for this machine only.
    #[test]
    fn secrets_are_not_sent_in_clear_to_another_machine() {
        let slack = "[[channels]]\nname = \"slack\"\ntype = \"slack\"\n";
        let am = "[[channels]]\nname = \"am\"\ntype = \"alertmanager\"\n";
        let pd = "[[channels]]\nname = \"pd\"\ntype = \"pagerduty\"\nrouting_key = \"R\"\n";
        let hook = "[[channels]]\nname = \"hook\"\ntype = \"webhook\"\n";
        let relay = "tls = \"none\"\nusername = \"u\"\npassword = \"XSECRETX\"\n";
        let why = |what: &str| {
            format!(
                "an http:// URL to another machine would send {what} unencrypted; use https:// \
                 (plain http:// is taken for 127.0.0.1, ::1 and localhost only)"
            )
        };
        expect(&[
            (
                &format!("{slack}webhook_url = \"http://hooks.slack.example/T/B/XSECRETX\"\n"),
                "channels[0].webhook_url",
                4,
                &why("the URL (a secret) and every alert"),
            ),
            (
                &format!("{hook}url = \"http://10.0.0.5/hook\"\n"),
                "channels[0].url",
                4,
                &why("the URL (a secret) and every alert"),
            ),
            (
                &format!("{am}url = \"http://alertmanager.internal:9093\"\n"),
                "channels[0].url",
                4,
                &why("every alert (and any secret header)"),
            ),
            (
                &format!("{pd}events_url = \"http://events.pagerduty.com\"\n"),
                "channels[0].events_url",
                5,
                &why("the routing key"),
            ),
            (
                &format!("{EMAIL}{relay}"),
                "channels[0].tls",
                7,
                "`tls = \"none\"` would send the password unencrypted to `smtp.example.com`; use \
                 `starttls` or `tls` (authentication without TLS is taken for a relay on this \
                 machine only)",
            ),
        ]);
        let all = format!(
            "{:?}",
            crate::config::testing::problems(&format!(
                "{slack}webhook_url = \"http://hooks.slack.example/T/B/XSECRETX\"\n"
            ))
        );
        assert!(!all.contains("XSECRETX"), "{all}");
        // This machine, however it is named; and TLS anywhere.
        for host in ["127.0.0.1", "[::1]", "localhost", "127.0.0.2"] {
            config(&format!(
                "{slack}webhook_url = \"http://{host}:9/x\"\n{am}url = \"http://{host}:9093\"\n\
                 {pd}events_url = \"http://{host}:9\"\n"
            ));
        }
        for host in ["127.0.0.1", "::1", "localhost"] {
            config(&format!("{EMAIL}{relay}").replace("smtp.example.com", host));
        }
        config(&format!(
            "{EMAIL}username = \"u\"\npassword = \"p\"\n{am}url = \"https://am.example:9093\"\n"
        ));
    }

    /// A URL from a file or the environment is named by where it came from, never quoted.
    #[test]
    fn a_bad_url_from_a_file_is_named_by_its_file() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(b"not a url XOXB9SECRET\n").unwrap();
        let path = file.path().display().to_string();
        let text = format!(
            "[[channels]]\nname = \"slack\"\ntype = \"slack\"\nwebhook_url_file = \"{path}\"\n"
        );
        expect_one(
            &text,
            "channels[0].webhook_url",
            1,
            &format!("the URL from file:{path} is not a valid URL (relative URL without a base)"),
        );
        let all = format!("{:?}", crate::config::testing::problems(&text));
        assert!(!all.contains("XOXB9SECRET"), "{all}");
    }
}
