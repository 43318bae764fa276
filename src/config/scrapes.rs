//! `[[scrapes]]`: endpoints in the Prometheus text format (or OpenMetrics) to read, as
//! written, validated and defaulted.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use toml::de::DeValue;

use super::Secret;
use super::fields::{
    CaFile, Pattern, ca_file, check_name, duration_field, http_url, plaintext_refused, secret_field,
};
use super::problems::{Problems, Site, named_elements};

// Defaults; docs/configuration.md lists the same.

fn scrape_interval() -> Duration {
    Duration::from_secs(60)
}
fn scrape_timeout() -> Duration {
    Duration::from_secs(10)
}
fn scrape_max_samples() -> usize {
    10_000
}

/// `[[scrapes]]`, validated.
pub(super) fn scrapes(
    problems: &mut Problems<'_>,
    value: Option<&Spanned<DeValue<'_>>>,
    base_dir: &Path,
) -> Vec<Scrape> {
    named_elements::<RawScrape, _>(
        problems,
        value,
        ("scrapes", "scrape"),
        |problems, raw, site| scrape(problems, raw, site, base_dir),
        |s| &s.name,
    )
}

/// `[[scrapes]]`: an endpoint in the Prometheus text format (or OpenMetrics) to read.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScrape {
    /// Unique name; becomes the `scrape` label.
    pub name: String,
    /// The endpoint, e.g. Supabase's `https://<ref>.supabase.co/customer/v1/privileged/metrics`.
    pub url: String,
    /// HTTP basic auth user name.
    pub username: Option<String>,
    /// HTTP basic auth password, a secret.
    pub password: Option<String>,
    /// A file whose content is the basic auth password.
    pub password_file: Option<String>,
    /// A bearer token, a secret.
    pub bearer_token: Option<String>,
    /// A file whose content is the bearer token.
    pub bearer_token_file: Option<String>,
    /// Time between scrapes.
    pub interval: Option<String>,
    /// Timeout of one scrape.
    pub timeout: Option<String>,
    /// Families to keep, by name or regex (whole name); all when absent.
    pub keep: Option<Vec<String>>,
    /// The most samples kept from one scrape.
    pub max_samples: Option<usize>,
    /// Extra CA certificates (PEM) for the endpoint.
    pub ca_file: Option<String>,
}

/// A `[[scrapes]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Scrape {
    pub name: String,
    pub url: url::Url,
    pub auth: ScrapeAuth,
    pub interval: Duration,
    pub timeout: Duration,
    /// Families to keep (anchored); empty keeps all.
    pub keep: Vec<Pattern>,
    pub max_samples: usize,
    pub ca: Option<CaFile>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScrapeAuth {
    None,
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

fn scrape(
    problems: &mut Problems<'_>,
    raw: RawScrape,
    site: &Site<'_, '_>,
    base_dir: &Path,
) -> Option<Scrape> {
    let before = problems.list.len();
    check_name(problems, site, &raw.name);
    let url = http_url(problems, site, &raw.url);
    let basic = raw.password.is_some() || raw.password_file.is_some() || raw.username.is_some();
    let bearer = raw.bearer_token.is_some() || raw.bearer_token_file.is_some();
    let auth = match (basic, bearer) {
        (true, true) => {
            problems.push(
                Some(site.span_of("bearer_token")),
                site.field("bearer_token"),
                "give either `username` and `password` or `bearer_token`, not both",
            );
            ScrapeAuth::None
        }
        (true, false) => {
            let password = secret_field(
                problems,
                site,
                "password",
                raw.password.as_deref(),
                raw.password_file.as_deref(),
                base_dir,
            );
            match (raw.username, password) {
                (Some(username), Some(password)) => ScrapeAuth::Basic { username, password },
                (None, _) => {
                    problems.push(
                        Some(site.span.clone()),
                        site.field("username"),
                        "missing: basic auth needs `username` with `password`",
                    );
                    ScrapeAuth::None
                }
                _ => ScrapeAuth::None,
            }
        }
        (false, true) => secret_field(
            problems,
            site,
            "bearer_token",
            raw.bearer_token.as_deref(),
            raw.bearer_token_file.as_deref(),
            base_dir,
        )
        .map(ScrapeAuth::Bearer)
        .unwrap_or(ScrapeAuth::None),
        (false, false) => ScrapeAuth::None,
    };
    if let Some(u) = &url
        && !matches!(auth, ScrapeAuth::None)
    {
        plaintext_refused(problems, site, "url", u, "the credentials");
    }
    let mut keep = Vec::new();
    for (i, k) in raw.keep.unwrap_or_default().iter().enumerate() {
        match regex::Regex::new(&format!("^(?:{k})$")) {
            Ok(r) => keep.push(Pattern(r)),
            Err(e) => problems.push(
                Some(site.span_of("keep")),
                site.field(&format!("keep[{i}]")),
                format!("`{k}` is not a valid regex: {e}"),
            ),
        }
    }
    let ms = Duration::from_millis;
    let interval = duration_field(
        problems,
        site,
        "interval",
        raw.interval.as_ref(),
        scrape_interval(),
        ms(100),
    );
    let timeout = duration_field(
        problems,
        site,
        "timeout",
        raw.timeout.as_ref(),
        scrape_timeout(),
        ms(10),
    );
    let ca = ca_file(problems, site, raw.ca_file.as_deref(), base_dir);
    if problems.list.len() > before {
        return None;
    }
    Some(Scrape {
        name: raw.name,
        url: url?,
        auth,
        interval,
        timeout,
        keep,
        max_samples: raw.max_samples.unwrap_or(scrape_max_samples()),
        ca,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::{Scrape, ScrapeAuth};
    use crate::config::Secret;
    use crate::config::testing::{config, expect};

    const SCRAPE: &str = "[[scrapes]]\nname = \"app\"\nurl = \"http://127.0.0.1:9/metrics\"\n";

    #[test]
    fn as_written_with_its_defaults() {
        let c = config(SCRAPE);
        assert_eq!(
            c.scrapes,
            [Scrape {
                name: "app".into(),
                url: "http://127.0.0.1:9/metrics".parse().unwrap(),
                auth: ScrapeAuth::None,
                interval: Duration::from_secs(60),
                timeout: Duration::from_secs(10),
                keep: Vec::new(),
                max_samples: 10_000,
                ca: None,
            }]
        );
        let c = config(&format!(
            "{SCRAPE}username = \"u\"\npassword = \"p\"\nkeep = [\"pg_.*\", \"up\"]\n"
        ));
        assert_eq!(
            c.scrapes[0].auth,
            ScrapeAuth::Basic {
                username: "u".into(),
                password: Secret::literal("p"),
            }
        );
        // Kept families are matched whole.
        let keep: Vec<&str> = c.scrapes[0].keep.iter().map(|p| p.0.as_str()).collect();
        assert_eq!(keep, ["^(?:pg_.*)$", "^(?:up)$"]);
        let c = config(&format!("{SCRAPE}bearer_token = \"t\"\n"));
        assert_eq!(c.scrapes[0].auth, ScrapeAuth::Bearer(Secret::literal("t")));
    }

    #[test]
    fn problems() {
        expect(&[
            (
                &format!("{SCRAPE}username = \"u\"\npassword = \"p\"\nbearer_token = \"t\"\n"),
                "scrapes[0].bearer_token",
                6,
                "give either `username` and `password` or `bearer_token`, not both",
            ),
            (
                &format!("{SCRAPE}password = \"p\"\n"),
                "scrapes[0].username",
                1,
                "missing: basic auth needs `username` with `password`",
            ),
            (
                &format!("{SCRAPE}username = \"u\"\n"),
                "scrapes[0].password",
                1,
                "missing: set `password` (a value or `env:NAME`) or `password_file`",
            ),
            (
                &format!("{SCRAPE}keep = [\"up\", \"pg_(\"]\n"),
                "scrapes[0].keep[1]",
                4,
                "`pg_(` is not a valid regex: regex parse error:",
            ),
            (
                &format!("{SCRAPE}interval = \"10ms\"\n"),
                "scrapes[0].interval",
                4,
                "must be at least 100ms",
            ),
            (
                &format!("{SCRAPE}timeout = \"1ms\"\n"),
                "scrapes[0].timeout",
                4,
                "must be at least 10ms",
            ),
            (
                "[[scrapes]]\nname = \"app\"\nurl = \"127.0.0.1:9/metrics\"\n",
                "scrapes[0].url",
                3,
                "`127.0.0.1:9/metrics` is not a valid URL (relative URL without a base)",
            ),
            (
                "[[scrapes]]\nname = \"app\"\nurl = \"unix:/run/app.sock\"\n",
                "scrapes[0].url",
                3,
                "must be an http:// or https:// URL",
            ),
            (
                "[[scrapes]]\nname = \"app\"\nurl = \"http://db.example:9187/metrics\"\n\
                 bearer_token = \"t\"\n",
                "scrapes[0].url",
                3,
                "an http:// URL to another machine would send the credentials unencrypted; use \
                 https:// (plain http:// is taken for 127.0.0.1, ::1 and localhost only)",
            ),
        ]);
    }
}
