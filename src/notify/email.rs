//! Email over SMTP with lettre: STARTTLS, implicit TLS or plain, optional authentication,
//! several recipients, a plain-text and an HTML part, and a subject that starts with the
//! severity (`[CRITICAL] Segmentation API down`).

use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, SinglePart, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Delivered, Notification, SendError, Status};
use crate::config::{EmailChannel, SmtpTls};

/// What an email of a report carries. On disk: inside an outbox entry.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReportMail {
    pub subject: String,
    /// Recipients; the channel's when empty.
    pub to: Vec<String>,
    pub text: String,
    pub html: String,
    /// (Content-ID, PNG bytes), base64 in the store.
    pub images: Vec<(String, String)>,
}

/// `[CRITICAL] …`, `[WARNING] …`, `[RESOLVED] …`, `[TEST] …`.
pub fn subject(n: &Notification) -> String {
    let tag = match n.status {
        Status::Resolved => "RESOLVED".to_string(),
        Status::Test => "TEST".to_string(),
        Status::Report => "REPORT".to_string(),
        Status::Acknowledged => "ACKNOWLEDGED".to_string(),
        Status::Firing => n.severity.as_str().to_uppercase(),
    };
    let shared = n.grouped.iter().all(|m| m.summary == n.summary);
    match n.grouped.len() {
        0 | 1 => format!("[{tag}] {}", n.summary),
        k if shared => format!("[{tag}] {} ({k} alerts)", n.summary),
        k => format!("[{tag}] {} ({k} alerts)", n.rule),
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML part: the same lines as the text, the title as a heading, links clickable.
pub fn html(n: &Notification) -> String {
    let text = n.text();
    let mut lines = text.lines();
    let title = lines.next().unwrap_or_default();
    let mut out = format!(
        "<!DOCTYPE html><html><body style=\"font-family: sans-serif\"><h2>{}</h2><p>",
        escape(title)
    );
    for line in lines {
        let linked = match line.split_once(": ") {
            Some((k @ ("Dashboard" | "Runbook"), url)) => {
                format!("{k}: <a href=\"{}\">{}</a>", escape(url), escape(url))
            }
            _ => escape(line),
        };
        out.push_str(&linked);
        out.push_str("<br>\n");
    }
    out.push_str("</p></body></html>\n");
    out
}

/// Builds the message; an address that does not parse is a configuration problem.
pub fn message(cfg: &EmailChannel, n: &Notification) -> Result<Message, SendError> {
    let permanent = |message: String| SendError::Permanent { message };
    let from: Mailbox = cfg
        .from
        .parse()
        .map_err(|e| permanent(format!("from address `{}`: {e}", cfg.from)))?;
    let mut builder = Message::builder().from(from).subject(subject(n));
    for to in &cfg.to {
        let mailbox: Mailbox = to
            .parse()
            .map_err(|e| permanent(format!("recipient `{to}`: {e}")))?;
        builder = builder.to(mailbox);
    }
    builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(n.text()),
                )
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_HTML)
                        .body(html(n)),
                ),
        )
        .map_err(|e| permanent(format!("cannot build the message: {e}")))
}

/// The message of a report: a plain-text part and, beside it, the HTML with its charts as
/// inline PNG parts (multipart/alternative of text and multipart/related).
pub fn report_message(cfg: &EmailChannel, r: &ReportMail) -> Result<Message, SendError> {
    use base64::Engine as _;
    use lettre::message::Attachment;
    let permanent = |message: String| SendError::Permanent { message };
    let from: Mailbox = cfg
        .from
        .parse()
        .map_err(|e| permanent(format!("from address `{}`: {e}", cfg.from)))?;
    let mut builder = Message::builder().from(from).subject(r.subject.clone());
    let to = if r.to.is_empty() { &cfg.to } else { &r.to };
    for to in to {
        let mailbox: Mailbox = to
            .parse()
            .map_err(|e| permanent(format!("recipient `{to}`: {e}")))?;
        builder = builder.to(mailbox);
    }
    let png = ContentType::parse("image/png").map_err(|e| permanent(e.to_string()))?;
    let mut related = MultiPart::related().singlepart(
        SinglePart::builder()
            .header(ContentType::TEXT_HTML)
            .body(r.html.clone()),
    );
    for (cid, data) in &r.images {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| permanent(format!("image {cid}: {e}")))?;
        related = related.singlepart(Attachment::new_inline(cid.clone()).body(bytes, png.clone()));
    }
    builder
        .multipart(
            MultiPart::alternative()
                .singlepart(
                    SinglePart::builder()
                        .header(ContentType::TEXT_PLAIN)
                        .body(r.text.clone()),
                )
                .multipart(related),
        )
        .map_err(|e| permanent(format!("cannot build the message: {e}")))
}

pub async fn send(
    cfg: &EmailChannel,
    n: &Notification,
    timeout: Duration,
) -> Result<Delivered, SendError> {
    deliver(cfg, message(cfg, n)?, timeout).await
}

/// Sends a report's message.
pub async fn send_report(
    cfg: &EmailChannel,
    r: &ReportMail,
    timeout: Duration,
) -> Result<Delivered, SendError> {
    deliver(cfg, report_message(cfg, r)?, timeout).await
}

async fn deliver(
    cfg: &EmailChannel,
    msg: Message,
    timeout: Duration,
) -> Result<Delivered, SendError> {
    let tls = |host: &str| {
        TlsParameters::new(host.to_string()).map_err(|e| SendError::Permanent {
            message: format!("TLS setup for {host}: {e}"),
        })
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.as_str())
        .port(cfg.port)
        .timeout(Some(timeout));
    builder = match cfg.tls {
        SmtpTls::None => builder.tls(Tls::None),
        SmtpTls::StartTls => builder.tls(Tls::Required(tls(&cfg.host)?)),
        SmtpTls::Tls => builder.tls(Tls::Wrapper(tls(&cfg.host)?)),
    };
    if let (Some(user), Some(password)) = (&cfg.username, &cfg.password) {
        builder = builder.credentials(Credentials::new(
            user.clone(),
            password.expose().to_string(),
        ));
    }
    let mailer = builder.build();
    match mailer.send(msg).await {
        Ok(response) => Ok(Delivered {
            protocol: "SMTP",
            status: response.code().into(),
            body: response.message().collect::<Vec<_>>().join(" "),
        }),
        Err(e) => {
            let message = format!("SMTP {}:{}: {e}", cfg.host, cfg.port);
            if e.is_permanent() {
                Err(SendError::Permanent { message })
            } else {
                Err(SendError::Retryable {
                    message,
                    retry_after: None,
                })
            }
        }
    }
}
