//! The built-in rules, as data. Each rule names a credential format: a regex whose `secret`
//! group is the credential, the keywords that must occur for the regex to be tried (the
//! Aho-Corasick prefilter), and the filters that keep placeholders out.
//!
//! Conventions the engine relies on:
//! - Every regex is compiled with `(?-u)` prepended: classes, `\b`, `\w` and `\s` are ASCII, and
//!   the haystack may be any bytes.
//! - The group `secret` is required; it is what is fingerprinted and redacted.
//! - Optional groups drive extra filters: `key` (the assigned name; generic rules drop names like
//!   `*_hash` or `*_id`), `q` (the opening quote; an unquoted bare identifier is code, not a
//!   value), `user` (a URL password equal to its user name is a development default). `head`,
//!   a leading part of `secret` that is not sensitive (a PEM armour line), is shown unmasked in
//!   excerpts.
//! - Keywords are matched ASCII-case-insensitively unless `case_sensitive_keywords` is set; each
//!   must be a literal part of every match, or the prefilter would hide it.
//! - Example lines carry `moat:allow` so that scanning this repository does not report the
//!   rule table itself.

use super::Severity;

/// Where around a keyword hit the rule's regex is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// The line of the hit (capped around the hit on very long lines).
    Line,
    /// From the start of the hit's line, this many bytes on (multi-line formats).
    Following(usize),
}

/// One built-in rule. See the module documentation for the conventions.
#[derive(Debug, Clone, Copy)]
pub struct RuleSpec {
    /// Stable identifier, `family-name`; the family is the part before the first `-`.
    pub id: &'static str,
    pub description: &'static str,
    pub severity: Severity,
    pub regex: &'static str,
    /// Literals of which at least one occurs in every match (prefilter).
    pub keywords: &'static [&'static str],
    pub case_sensitive_keywords: bool,
    /// Literals that must all occur somewhere in the file (context, e.g. a service account).
    pub requires: &'static [&'static str],
    /// Regexes on the `/`-separated relative path; when not empty the rule applies only to
    /// matching files, and a rule without keywords then runs over the whole file.
    pub paths: &'static [&'static str],
    /// Minimum Shannon entropy (bits per byte) of the secret.
    pub min_entropy: f64,
    /// Regexes on the secret: a match means "not a credential".
    pub allow: &'static [&'static str],
    /// Generic (name-based) rules yield to specific ones on the same bytes, and apply the
    /// placeholder filters (variables, sequences, well-known defaults).
    pub generic: bool,
    pub span: Span,
    /// Lines that must produce a finding of this rule (checked by the unit tests).
    pub examples: &'static [&'static str],
}

impl RuleSpec {
    const DEFAULT: RuleSpec = RuleSpec {
        id: "",
        description: "",
        severity: Severity::High,
        regex: "",
        keywords: &[],
        case_sensitive_keywords: false,
        requires: &[],
        paths: &[],
        min_entropy: 2.5,
        allow: &[],
        generic: false,
        span: Span::Line,
        examples: &[],
    };

    /// The rule family (the id up to the first `-`), used by labels and reports.
    pub fn family(&self) -> &'static str {
        self.id.split('-').next().unwrap_or(self.id)
    }
}

/// The built-in rules, most specific first (earlier rules win when two match the same bytes).
pub fn builtin_rules() -> &'static [RuleSpec] {
    RULES
}

// Shared regex fragments. `ASSIGN` is the connector between a name and its value in code,
// config and environment files: `=`, `:`, `:=`, `=>`, with optional quotes around the name.
macro_rules! assign {
    () => {
        r#"["']?[ \t]*(?::=|=>|=|:)[ \t]*["']?"#
    };
}
// A name that mentions a secret, as the generic rules see it.
macro_rules! secret_name {
    () => {
        r#"[a-z0-9_.\-]*(?:passw(?:or)?d|passphrase|pwd|secret|token|api[_.\-]?key|access[_.\-]?key|private[_.\-]?key|auth[_.\-]?key|credentials?)[a-z0-9_.\-]*"#
    };
}

static RULES: &[RuleSpec] = &[
    // ---------------------------------------------------------------- cloud: AWS
    RuleSpec {
        id: "aws-access-key-id",
        description: "AWS access key ID",
        severity: Severity::Critical,
        regex: r"\b(?P<secret>(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA)[A-Z0-9]{16})\b",
        keywords: &[
            "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "APKA", "AROA",
            "A3T",
        ],
        case_sensitive_keywords: true,
        // Real key IDs are random base32; a low-entropy one is a placeholder (AKIATESTTEST...).
        min_entropy: 3.0,
        examples: &[
            "AWS_ACCESS_KEY_ID=AKIAUJZDE8GXD6NCF10E", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "aws-secret-access-key",
        description: "AWS secret access key",
        severity: Severity::Critical,
        regex: r#"(?i)aws_?(?:sec(?:ret)?)?_?(?:access)?_?key["']?[ \t]*(?::=|=>|=|:)?[ \t]*["']?(?P<secret>[a-z0-9/+=]{40})(?:[^a-z0-9/+=]|$)"#,
        keywords: &["aws"],
        // The name and the exact length are the evidence; only a run of one character is a
        // placeholder.
        min_entropy: 1.0,
        examples: &[
            "aws_secret_access_key = El2hpChYgCfrL1spNxnyVmihA/2O76UMFxFkM/R5", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "aws-session-token",
        description: "AWS session token",
        severity: Severity::High,
        regex: concat!(
            r"(?i)aws_?session_?token",
            assign!(),
            r"(?P<secret>[a-z0-9/+=]{100,})"
        ),
        keywords: &["aws_session", "awssession"],
        min_entropy: 3.5,
        examples: &[
            "AWS_SESSION_TOKEN=Kjp1vRt+1fjORS/6ilI8ihN5KXSc7Tvo/hBKqFYY/kv5ZJr3J1TWDtkwtDDb+xHKas1VOqg6YYZYn9ZhyiA4uoRgnatmUdjAWtGSU8po+799NksnRH9ucAUs", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "aws-mws-key",
        description: "Amazon Marketplace Web Service auth token",
        severity: Severity::High,
        regex: r"(?P<secret>amzn\.mws\.[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})",
        keywords: &["amzn.mws."],
        examples: &[
            "mws = amzn.mws.0928b5b7-a767-c76f-b008-f86bebb2737f", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    // ---------------------------------------------------------------- cloud: Google
    RuleSpec {
        id: "gcp-service-account-key",
        description: "Google Cloud service account key (JSON with private_key)",
        severity: Severity::Critical,
        regex: r#""private_key"[ \t]*:[ \t]*"(?P<secret>(?P<head>-----BEGIN[A-Z ]{0,20}PRIVATE KEY-----)[A-Za-z0-9+/=\\ ]{64,}?-----END[A-Z ]{0,20}PRIVATE KEY-----(?:\\n)?)""#,
        keywords: &["\"private_key\""],
        // A PEM in JSON is only a service account key when the file says so.
        requires: &["service_account", "client_email"],
        examples: &[
            r#"{"type": "service_account", "client_email": "x@p.iam.gserviceaccount.com", "private_key": "-----BEGIN PRIVATE KEY-----\n5ef7o9CLRQDBAKdCwdI2ViJloZX0ChVQGj9r366yRyoZvKyjc4zzHzLcciTA1bHT\n-----END PRIVATE KEY-----\n"}"#, // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "gcp-api-key",
        description: "Google API key",
        severity: Severity::High,
        regex: r"\b(?P<secret>AIza[0-9A-Za-z_\-]{35})(?:[^0-9A-Za-z_\-]|$)",
        keywords: &["AIza"],
        case_sensitive_keywords: true,
        examples: &[
            "key: AIzazRA9a9SkpXz9w3QlY7Zkuvqdt7s8Stqcbnr", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "gcp-oauth-client-secret",
        description: "Google OAuth client secret",
        severity: Severity::High,
        regex: r"\b(?P<secret>GOCSPX-[0-9A-Za-z_\-]{28})(?:[^0-9A-Za-z_\-]|$)",
        keywords: &["GOCSPX-"],
        case_sensitive_keywords: true,
        examples: &[
            "client_secret: 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", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "gcp-oauth-access-token",
        description: "Google OAuth access token",
        severity: Severity::High,
        regex: r"\b(?P<secret>ya29\.[0-9A-Za-z_\-]{30,})",
        keywords: &["ya29."],
        examples: &[
            "Authorization: Bearer ya29.P9nhFyJfm5di4PzJ59FHz5r1pY4OjE2jBMptUsGr7CmY_uCu3ZR1zTOlUcR6", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    // ---------------------------------------------------------------- cloud: Azure
    RuleSpec {
        id: "azure-storage-account-key",
        description: "Azure storage (or Cosmos DB) account key",
        severity: Severity::Critical,
        regex: r"(?i)AccountKey[ \t]*=[ \t]*(?P<secret>[a-z0-9+/]{86}==)",
        keywords: &["accountkey"],
        examples: &[
            "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=4cXQLioDnkHIfxIq2HZt/PlJhx2jIclHkCiHp6bR1IqfEouHgxzNNAL5wIScGebcy8F5n3/YNBDRzrZSgqbjG3==;EndpointSuffix=core.windows.net", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "azure-shared-access-key",
        description: "Azure Service Bus / Event Hubs / IoT Hub shared access key",
        severity: Severity::Critical,
        regex: r"(?i)SharedAccessKey[ \t]*=[ \t]*(?P<secret>[a-z0-9+/]{42,43}=)",
        keywords: &["sharedaccesskey="],
        examples: &[
            "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey=uhkWKFLf6xuI5aHUQPFeNBTxaQWk8JzFalHlsZfYcMM=", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "azure-app-configuration-connection-string",
        description: "Azure App Configuration connection string",
        severity: Severity::High,
        regex: r"(?i)Endpoint=https://[a-z0-9\-]+\.azconfig\.io;Id=[^;\s]+;Secret=(?P<secret>[a-z0-9+/=]{20,})",
        keywords: &["azconfig.io"],
        examples: &[
            "Endpoint=https://cfg.azconfig.io;Id=Ab1:x;Secret=DktXP/tKsf2rcDkdfrUnW5gcF+Ha6ili8GjHEAD6=", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "azure-entra-client-secret",
        description: "Azure Entra ID (AD) client secret",
        severity: Severity::Critical,
        // The `<digit>Q~` marker at offset 3 is what makes the format recognisable on its own.
        regex: r"(?:^|[^A-Za-z0-9_~.\-])(?P<secret>[A-Za-z0-9_~.\-]{3}[0-9]Q~[A-Za-z0-9_~.\-]{31,34})(?:[^A-Za-z0-9_~.\-]|$)",
        keywords: &["Q~"],
        case_sensitive_keywords: true,
        min_entropy: 3.5,
        examples: &[
            "AZURE_CLIENT_SECRET=F2y8Q~j9KfzjsQGMrb9h_ImB_LK777pzNk8cL6j-", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "azure-sas-token",
        description: "Azure shared access signature (SAS) token",
        severity: Severity::High,
        regex: r#"(?i)\bsv=[0-9]{4}-[0-9]{2}-[0-9]{2}&[^\s"'<>]{0,300}?\bsig=(?P<secret>[a-z0-9%+/=]{30,})"#,
        keywords: &["sig="],
        examples: &[
            "https://a.blob.core.windows.net/c?sv=2024-08-04&ss=b&sp=rl&se=2026-12-31T23:59:00Z&sig=5IXAAjlsHUqJoUD/+Ydua+5ZMs1SWOpQaPRYpzbLGVi%3D", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "azure-devops-pat",
        description: "Azure DevOps personal access token",
        severity: Severity::Critical,
        regex: concat!(
            r"(?i)(?:azure[_\-]?devops|devops|vsts|\bado)[a-z0-9_.\-]{0,30}",
            assign!(),
            r"(?P<secret>[a-z2-7]{52})\b"
        ),
        keywords: &["devops", "vsts", "ado"],
        examples: &[
            "AZURE_DEVOPS_PAT=zyex3rdrgdsjpr3umx3bznfd24is7dik62vstqqzpt6zhkken7o4", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "azure-devops-pat-v2",
        description: "Azure DevOps personal access token (84-character format)",
        severity: Severity::Critical,
        regex: r"\b(?P<secret>[A-Za-z0-9]{52}JQQJ99[A-Za-z0-9]{18}AZDO[A-Za-z0-9]{4})\b",
        keywords: &["JQQJ99"],
        case_sensitive_keywords: true,
        examples: &[
            "pat = 9uP14pEHpJpb9ATPtdbmF4RPAfqoQB7xoFcSvTAxRzmaZsV2GenFJQQJ99mtX0moDoqW4sg8NFNlAZDO5oFA", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "azure-ai-services-key",
        description: "Azure AI services (Cognitive Services) key",
        severity: Severity::High,
        regex: r"\b(?P<secret>[A-Za-z0-9]{52}JQQJ99[A-Za-z0-9]{18}ACOG[A-Za-z0-9]{4})\b",
        keywords: &["JQQJ99"],
        case_sensitive_keywords: true,
        examples: &[
            "key: 6vWCBiJmpflvJfupxqZKm4bV3AyAVHnyrvWdFrK9xiRGHOY32nfrJQQJ995pyzPCB9t2039bicBTACOGW5ZE", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "azure-container-registry-key",
        description: "Azure container registry access key",
        severity: Severity::High,
        regex: r"\b(?P<secret>[A-Za-z0-9]{52}JQQJ99[A-Za-z0-9]{18}AZCR[A-Za-z0-9]{4})\b",
        keywords: &["JQQJ99"],
        case_sensitive_keywords: true,
        examples: &[
            "key: 9LFaez7770H2DCpYgojjHRg80USP2W5DfJXcaYioK6cPTt9iOqHOJQQJ99BSWhgetH8LmyqoYMaaAZCRItDr", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "azure-container-registry-password",
        description: "Azure container registry password",
        severity: Severity::High,
        regex: concat!(
            r"(?i)\.azurecr\.io\b.{0,60}?\b(?:password|passwd|pwd|secret|token)",
            assign!(),
            r"(?P<secret>[a-z0-9+/=]{32,})"
        ),
        keywords: &["azurecr.io"],
        examples: &[
            "registry.azurecr.io password: hsYgBds1ghxY5OokvQyx7eNWVQ4vnakJ", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    // ---------------------------------------------------------------- forges: GitHub
    RuleSpec {
        id: "github-pat",
        description: "GitHub personal access token (classic)",
        severity: Severity::Critical,
        regex: r"\b(?P<secret>ghp_[0-9A-Za-z]{36})",
        keywords: &["ghp_"],
        min_entropy: 3.0,
        examples: &[
            "GITHUB_TOKEN=ghp_fwA94hJ9WnywX0t0ZBfdTEmxI6CmuxV5EbOA", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "github-oauth-token",
        description: "GitHub OAuth access token",
        severity: Severity::Critical,
        regex: r"\b(?P<secret>gho_[0-9A-Za-z]{36})",
        keywords: &["gho_"],
        min_entropy: 3.0,
        examples: &[
            "token: gho_pZOXzcycDeZ6dqmVe5Mvxrv99NcqVTSu7rta", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "github-user-token",
        description: "GitHub user-to-server token",
        severity: Severity::Critical,
        regex: r"\b(?P<secret>ghu_[0-9A-Za-z]{36})",
        keywords: &["ghu_"],
        min_entropy: 3.0,
        examples: &[
            "token: ghu_UWM6ZO88eb0ogET9D9XyYq6B0Fi7FlaZ7Vt0", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "github-app-token",
        description: "GitHub App installation token",
        severity: Severity::Critical,
        // Both the 36-character form and the stateless `ghs_<app id>_<JWT>` form.
        regex: r"\b(?P<secret>ghs_(?:[0-9]+_[0-9A-Za-z_\-.]{20,}|[0-9A-Za-z]{36,}))",
        keywords: &["ghs_"],
        min_entropy: 3.0,
        examples: &[
            "token: ghs_SXjMpu3uDxYYMfGmzWkpAePcEJIukB4geqNf", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "github-refresh-token",
        description: "GitHub refresh token",
        severity: Severity::Critical,
        regex: r"\b(?P<secret>ghr_[0-9A-Za-z]{36,76})",
        keywords: &["ghr_"],
        min_entropy: 3.0,
        examples: &[
            "refresh: ghr_ngAFTCloiADN5RpVI2XQWhX1ssrKrxqVqmCplppjs46LmuezqpGHoPZgPDcgaE40o1C6xc4sohdm", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "github-fine-grained-pat",
        description: "GitHub fine-grained personal access token",
        severity: Severity::Critical,
        // No left boundary: the prefix is distinctive enough to report even when glued to a
        // word (as in `ourgithub_pat_...`).
        regex: r"(?P<secret>github_pat_[0-9A-Za-z]{22}_[0-9A-Za-z]{59})",
        keywords: &["github_pat_"],
        min_entropy: 3.0,
        examples: &[
            "GH=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", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    // ---------------------------------------------------------------- forges: GitLab
    RuleSpec {
        id: "gitlab-pat",
        description: "GitLab personal access token",
        severity: Severity::Critical,
        regex: r"\b(?P<secret>glpat-[0-9A-Za-z_\-]{20,}(?:\.[0-9a-z]{9})?)",
        keywords: &["glpat-"],
        min_entropy: 3.0,
        examples: &[
            "GITLAB_TOKEN=glpat-T11cUzYZAa3u2olZU6uq", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "gitlab-deploy-token",
        description: "GitLab deploy token",
        severity: Severity::High,
        regex: r"\b(?P<secret>gldt-[0-9A-Za-z_\-]{20,})",
        keywords: &["gldt-"],
        min_entropy: 3.0,
        examples: &[
            "token: gldt-bgsYlVvsSKuvinX_zMqf", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "gitlab-runner-token",
        description: "GitLab runner authentication token",
        severity: Severity::High,
        regex: r"\b(?P<secret>glrt-[0-9A-Za-z_\-]{20,})",
        keywords: &["glrt-"],
        min_entropy: 3.0,
        examples: &[
            "token = \"glrt-9OgXluCZz8xBfZuXTptF\"", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "gitlab-runner-registration-token",
        description: "GitLab runner registration token",
        severity: Severity::High,
        regex: r"\b(?P<secret>GR1348941[0-9A-Za-z_\-]{20,})",
        keywords: &["GR1348941"],
        case_sensitive_keywords: true,
        examples: &[
            "registration-token: GR1348941sG9AHEOVezxZuJPWvHog", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "gitlab-pipeline-trigger-token",
        description: "GitLab pipeline trigger token",
        severity: Severity::High,
        regex: r"\b(?P<secret>glptt-[0-9a-f]{40})\b",
        keywords: &["glptt-"],
        examples: &[
            "TRIGGER=glptt-e7ee5fc324bdb2e1142a21c402364f9572b85a8e", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "gitlab-feed-token",
        description: "GitLab feed token",
        severity: Severity::Medium,
        regex: r"\b(?P<secret>glft-[0-9A-Za-z_\-]{20,})",
        keywords: &["glft-"],
        min_entropy: 3.0,
        examples: &[
            "feed: glft-yfePpX6N1NF2XV54wca_", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "gitlab-oauth-app-secret",
        description: "GitLab OAuth application secret",
        severity: Severity::High,
        regex: r"\b(?P<secret>gloas-[0-9A-Za-z_\-]{64})",
        keywords: &["gloas-"],
        examples: &[
            "secret: gloas-U5nGYVHWVsUQk4DwgLGNOaeCtL31Ugq_DfcgaTMnTC0MrAU8urbFt5misIZHbhS4", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    // ---------------------------------------------------------------- chat
    RuleSpec {
        id: "slack-token",
        description: "Slack bot, user or legacy token",
        severity: Severity::High,
        regex: r"\b(?P<secret>xox[abeoprs]-(?:[0-9]{8,14}-){1,3}[0-9A-Za-z]{8,64})",
        keywords: &["xox"],
        examples: &[
            "SLACK_BOT_TOKEN=xoxb-987320008062-3201098326389-PGPPA0NlGtetOd4UYETIay2B", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "slack-app-token",
        description: "Slack app-level token",
        severity: Severity::High,
        regex: r"\b(?P<secret>xapp-[0-9]-[A-Z0-9]+-[0-9]+-[a-z0-9]{32,})",
        keywords: &["xapp-"],
        examples: &[
            "SLACK_APP_TOKEN=xapp-1-A3F2LOGQOCH-5404868443180-58765a6ca7cff00d796c25410335b400141212b62c376631129f34369aad80b8", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "slack-config-token",
        description: "Slack configuration token",
        severity: Severity::High,
        regex: r"\b(?P<secret>xoxe\.xox[bp]-[0-9]-[A-Z0-9]{160,})",
        keywords: &["xoxe."],
        examples: &[
            "xoxe.xoxp-1-9LFAEZ7770H2DCPYGOJJHRG80USP2W5DFJXCAYIOK6CPTT9IOQHOJQQJ99BSWHGETH8LMYQOYMAAAZCRITDR9LFAEZ7770H2DCPYGOJJHRG80USP2W5DFJXCAYIOK6CPTT9IOQHOJQQJ99BSWHGETH8LMYQOYMAAAZCRITDR", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "slack-webhook",
        description: "Slack incoming webhook URL",
        severity: Severity::Medium,
        regex: r"hooks\.slack\.com/(?:services|workflows|triggers)/(?P<secret>[A-Za-z0-9+/_\-]{30,})",
        keywords: &["hooks.slack.com"],
        examples: &[
            "url: https://hooks.slack.com/services/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", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "discord-webhook",
        description: "Discord webhook URL",
        severity: Severity::Medium,
        regex: r"discord(?:app)?\.com/api/webhooks/[0-9]+/(?P<secret>[A-Za-z0-9_\-]{60,68})",
        keywords: &["/api/webhooks/"],
        examples: &[
            "https://discord.com/api/webhooks/633535644739274244/lQa_FuO5BgAUf4x3rMdotbrMtTmv7Yl1RYQeEzberD3ncgOiop_r2awCsoT-jSBCjIwb", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "telegram-bot-token",
        description: "Telegram bot token",
        severity: Severity::Medium,
        regex: r"\b(?P<secret>[0-9]{8,10}:AA[0-9A-Za-z_\-]{33})(?:[^0-9A-Za-z_\-]|$)",
        keywords: &[":AA"],
        case_sensitive_keywords: true,
        examples: &[
            "BOT_TOKEN=4410380685:AAIbPf6KQ0IZ2O1XtXX0saEGWEzolegZP4O", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    // ---------------------------------------------------------------- payments, messaging
    RuleSpec {
        id: "stripe-secret-key",
        description: "Stripe secret or restricted key",
        severity: Severity::Critical,
        regex: r"\b(?P<secret>[rs]k_(?:live|test)_[0-9A-Za-z]{10,247})\b",
        keywords: &["sk_live_", "sk_test_", "rk_live_", "rk_test_"],
        examples: &[
            "stripe.api_key = 'sk_live_SY0l9FLw91GqK8ks0n8SoFkh'", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "stripe-publishable-key",
        description: "Stripe publishable key",
        severity: Severity::Low,
        regex: r"\b(?P<secret>pk_(?:live|test)_[0-9A-Za-z]{10,247})\b",
        keywords: &["pk_live_", "pk_test_"],
        examples: &[
            "return \"pk_live_8OXfFYSJYgOuwgz7z54VfB4P\"", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "stripe-webhook-secret",
        description: "Stripe webhook signing secret",
        severity: Severity::High,
        regex: r"\b(?P<secret>whsec_[0-9A-Za-z]{32,})",
        keywords: &["whsec_"],
        examples: &[
            "STRIPE_WEBHOOK_SECRET=whsec_bxntqB5IGky4Oo8DiIMWSWMPcwLuHj31", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "square-token",
        description: "Square access token or OAuth secret",
        severity: Severity::High,
        regex: r"\b(?P<secret>sq0(?:atp|csp)-[0-9A-Za-z_\-]{22,43})",
        keywords: &["sq0atp-", "sq0csp-"],
        examples: &[
            "square: sq0atp-wMRk7xbO00elFsvtSrAzCQ", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "twilio-api-key",
        description: "Twilio API key",
        severity: Severity::High,
        regex: r"\b(?P<secret>SK[0-9a-fA-F]{32})\b",
        keywords: &["SK"],
        case_sensitive_keywords: true,
        min_entropy: 3.0,
        examples: &[
            "TWILIO_API_KEY=SKea5ee874ae7689447ab57a683536c449", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "twilio-auth-token",
        description: "Twilio auth token",
        severity: Severity::High,
        regex: concat!(
            r"(?i)twilio[a-z0-9_.\-]{0,20}",
            assign!(),
            r"(?P<secret>[0-9a-f]{32})\b"
        ),
        keywords: &["twilio"],
        examples: &[
            "TWILIO_AUTH_TOKEN=9d863386ce10cd79e048c07dd7753eda", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "sendgrid-api-key",
        description: "SendGrid API key",
        severity: Severity::High,
        regex: r"\b(?P<secret>SG\.[0-9A-Za-z_\-]{22}\.[0-9A-Za-z_\-]{43})",
        keywords: &["SG."],
        case_sensitive_keywords: true,
        examples: &[
            "SENDGRID_API_KEY=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", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "mailgun-api-key",
        description: "Mailgun API key",
        severity: Severity::High,
        regex: concat!(
            r"(?i)mailgun[a-z0-9_.\-]{0,25}",
            assign!(),
            r"(?P<secret>(?:pub)?key-[0-9a-f]{32}|[0-9a-f]{32}-[0-9a-f]{8}-[0-9a-f]{8})\b"
        ),
        keywords: &["mailgun"],
        examples: &[
            "MAILGUN_API_KEY=key-bde94fb78c8d5f08b79affd2b49c12a4", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "mailchimp-api-key",
        description: "Mailchimp API key",
        severity: Severity::Medium,
        regex: r"\b(?P<secret>[0-9a-f]{32}-us[0-9]{1,2})\b",
        keywords: &["-us"],
        case_sensitive_keywords: true,
        examples: &[
            "apikey: b0062983475eb46c5296f62e338d74ff-us14", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "sendinblue-api-key",
        description: "Brevo (Sendinblue) API key",
        severity: Severity::Medium,
        regex: r"\b(?P<secret>xkeysib-[a-f0-9]{64}-[0-9A-Za-z]{16})\b",
        keywords: &["xkeysib-"],
        examples: &[
            "key: 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", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    // ---------------------------------------------------------------- package registries
    RuleSpec {
        id: "npm-access-token",
        description: "npm access token",
        severity: Severity::Critical,
        regex: r"\b(?P<secret>npm_[0-9A-Za-z]{36})\b",
        keywords: &["npm_"],
        examples: &[
            "NPM_TOKEN=npm_JdED5jSFpFkIM3Vak1uDSKFQs1DxBA9RelOx", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "npm-auth-config",
        description: "npm registry credentials in .npmrc (_auth / _authToken)",
        severity: Severity::High,
        regex: r#"(?i)_auth(?:token)?[ \t]*=[ \t]*(?P<q>["']?)(?P<secret>[0-9a-z+/=._\-]{16,})"#,
        keywords: &["_auth"],
        min_entropy: 3.0,
        generic: true,
        examples: &[
            "//registry.npmjs.org/:_authToken=dcfQm9+seB1qRmUR8AK3R2GgLLT/ZQISA/pQ", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "pypi-token",
        description: "PyPI upload token",
        severity: Severity::Critical,
        regex: r"\b(?P<secret>pypi-AgE(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[0-9A-Za-z_\-]{50,})",
        keywords: &["pypi-AgE"],
        examples: &[
            "password = pypi-AgEIcHlwaS5vcmcyOMqlfZZgZMnafy8hWskBf6wmxe1mbVrNHMx1eOc3g-fp1Z5ibXt80nk8Btb2abplBpq8c", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "rubygems-api-key",
        description: "RubyGems API key",
        severity: Severity::High,
        regex: r"\b(?P<secret>rubygems_[0-9a-f]{48})\b",
        keywords: &["rubygems_"],
        examples: &[
            ":rubygems_api_key: rubygems_87e51b429fe8110102c995f1abef543b5dfce8a981a049d7", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "private-packagist-token",
        description: "Private Packagist token",
        severity: Severity::High,
        regex: r"\b(?P<secret>packagist_[ou][ru]t_[0-9A-Za-z]{60,80})\b",
        keywords: &["packagist_"],
        examples: &[
            "COMPOSER_AUTH=packagist_out_ec56f24b1c71b106e934d263b5ba0837bbf1b3ba3178b6e0e30f328549c488e00a4f", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "artifactory-api-key",
        description: "JFrog Artifactory API key",
        severity: Severity::High,
        regex: r"\b(?P<secret>AKCp[0-9A-Za-z]{69})\b",
        keywords: &["AKCp"],
        case_sensitive_keywords: true,
        examples: &[
            "X-JFrog-Art-Api: AKCpWG5jUMVDc8uEia875rjmL6KGczlVLPrOWpsXIbAJAPfZ8ROyF9TxS5ruk1KF0dYIw5imH", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    // ---------------------------------------------------------------- container registries
    RuleSpec {
        id: "docker-config-auth",
        description: "Docker registry credentials (\"auth\" in a Docker config.json)",
        severity: Severity::High,
        regex: r#""(?:auth|identitytoken)"[ \t]*:[ \t]*"(?P<secret>[A-Za-z0-9+/]{8,}={0,2})""#,
        keywords: &["\"auth\"", "\"identitytoken\""],
        requires: &["\"auths\""],
        examples: &[
            r#"{"auths": {"registry.example.org": {"auth": "WXWD5KaPHI2ufKssJ/Sk+WzDNhY7AGbX=="}}}"#, // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "docker-config-secret",
        description: "Docker config in a Kubernetes secret (.dockerconfigjson / .dockercfg)",
        severity: Severity::High,
        regex: r#"\.docker(?:configjson|cfg)["']?[ \t]*:[ \t]*["']?(?P<secret>[A-Za-z0-9+/]{8,}={0,2})"#,
        keywords: &[".dockerconfigjson", ".dockercfg"],
        examples: &[
            "  .dockerconfigjson: eyJhdXRocyI6eyJyZWdpc3RyeSI6e319fQ==", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    // ---------------------------------------------------------------- keys
    RuleSpec {
        id: "private-key",
        description: "Private key (PEM: RSA, EC, DSA, PKCS#8, encrypted, OpenSSH)",
        severity: Severity::Critical,
        // The whole block is the secret, so the finding points at its BEGIN line. The body
        // may hold real newlines or `\n` escapes (a key inside JSON or a string literal); a
        // dash must be followed by a letter or digit so the body cannot run into the next
        // armour line.
        regex: concat!(
            r"(?P<secret>(?P<head>-----BEGIN[ A-Z0-9]{0,30}PRIVATE KEY-----)",
            r"(?:[A-Za-z0-9+/=\s\\:,.]|-[A-Za-z0-9]){32}(?:[A-Za-z0-9+/=\s\\:,.]|-[A-Za-z0-9])*?",
            r"-----END[ A-Z0-9]{0,30}PRIVATE KEY-----)"
        ),
        keywords: &["PRIVATE KEY-----"],
        span: Span::Following(64 * 1024),
        examples: &[
            "-----BEGIN RSA PRIVATE KEY-----\\nuOTNnfwT1d6nRntU8+kRO8qnGXATGcyJ3Xu3rrboBWdbl7fAjPR7+AaFATWnmqz4\\n-----END RSA PRIVATE KEY-----", // moat:allow
            "-----BEGIN OPENSSH PRIVATE KEY-----\nuOTNnfwT1d6nRntU8+kRO8qnGXATGcyJ3Xu3rrboBWdbl7fAjPR7+AaFATWnmqz4\n-----END OPENSSH PRIVATE KEY-----", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "private-key-pgp",
        description: "PGP private key block",
        severity: Severity::Critical,
        regex: r"(?P<secret>(?P<head>-----BEGIN PGP PRIVATE KEY BLOCK-----)(?:[^-]|-[^-]){32}(?:[^-]|-[^-])*?-----END PGP PRIVATE KEY BLOCK-----)",
        keywords: &["PGP PRIVATE KEY BLOCK"],
        span: Span::Following(256 * 1024),
        examples: &[
            "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBF5ef7o9CLRQDBAKdCwdI2ViJloZX0ChVQGj9r366yRyoZvKyjc4zzHzLcciTA1bHT\n=ab12\n-----END PGP PRIVATE KEY BLOCK-----", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "private-key-putty",
        description: "PuTTY private key",
        severity: Severity::Critical,
        regex: r"(?P<secret>PuTTY-User-Key-File-[23]: [^\r\n]+(?:\r?\n[^\r\n]*){1,40}?\r?\nPrivate-Lines: [0-9]+(?:\r?\n[A-Za-z0-9+/=]{16,})+)",
        keywords: &["PuTTY-User-Key-File-"],
        span: Span::Following(32 * 1024),
        examples: &[
            "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nPrivate-Lines: 1\n5ef7o9CLRQDBAKdCwdI2ViJloZX0ChVQGj9r366yRyoZvKyjc4zzHzLcciTA1bHT", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "age-secret-key",
        description: "age secret key",
        severity: Severity::Critical,
        regex: r"(?P<secret>AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58})",
        keywords: &["AGE-SECRET-KEY-1"],
        examples: &[
            "AGE-SECRET-KEY-14WS7ZNA3H3GSQ7XHFWE9PG8RDTSHFT2PK0ULDKCAD5PXQYEKRWC6CWPSPS", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "jwt",
        description: "JSON Web Token",
        severity: Severity::Medium,
        regex: r"\b(?P<secret>eyJ[0-9A-Za-z_\-]{10,}\.eyJ[0-9A-Za-z_\-]{10,}\.[0-9A-Za-z_\-]{10,})",
        keywords: &["eyJ"],
        case_sensitive_keywords: true,
        examples: &[
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJ64ig8vZE88sp-WiEDaYCeFmzae7gZECf0Hft7c9n.mxsuPnWajdkjgL6YaAdx6ApA2olTmlEmlVJMNLs-Qya", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    // ---------------------------------------------------------------- Kubernetes
    RuleSpec {
        id: "kubeconfig-client-key-data",
        description: "Kubernetes client key in a kubeconfig (client-key-data)",
        severity: Severity::Critical,
        regex: r#"client-key-data:[ \t]*["']?(?P<secret>[A-Za-z0-9+/=]{40,})"#,
        keywords: &["client-key-data"],
        examples: &[
            "    client-key-data: 6lTiDYHP9zyBylxLUTZtFf/VnV7ktOdSJcmeA+BHJ2m5qGeRzxWkdgeV6+iY", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "kubeconfig-token",
        description: "Kubernetes user token in a kubeconfig",
        severity: Severity::Critical,
        regex: r#"(?m)^[ \t]*-?[ \t]*token:[ \t]*["']?(?P<secret>[A-Za-z0-9._\-]{20,})["']?[ \t]*\r?$"#,
        keywords: &["token:"],
        requires: &["clusters:", "users:"],
        examples: &[
            "clusters: []\nusers:\n- name: ci\n  user:\n    token: plGODl-Yx5uVECweGThdgH9hmsOazM4n8PVGXpV9", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    // ---------------------------------------------------------------- URLs with credentials
    RuleSpec {
        id: "database-url-password",
        description: "Database or broker URL with a password",
        severity: Severity::High,
        regex: r#"(?i)\b(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|cockroachdb|clickhouse|neo4j(?:\+s)?|couchdb)://(?P<user>[^:@/\s"'<>]{0,64}):(?P<secret>[a-z0-9._~!$&()*+,;=%\-]{3,128})@[^\s"'<>/]+"#,
        keywords: &[
            "postgres://",
            "postgresql://",
            "mysql://",
            "mariadb://",
            "mongodb://",
            "mongodb+srv://",
            "redis://",
            "rediss://",
            "amqp://",
            "amqps://",
            "mssql://",
            "sqlserver://",
            "cockroachdb://",
            "clickhouse://",
            "neo4j://",
            "neo4j+s://",
            "couchdb://",
        ],
        // Weak passwords are still leaked passwords: no entropy floor, only the placeholder
        // filters (and a password equal to the user name, the usual development default).
        min_entropy: 0.0,
        generic: true,
        examples: &[
            "DATABASE_URL=postgres://app:7tkPl9UOVShXzz18YV1vzzFZ@db.internal:5432/app", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "url-basic-auth",
        description: "URL with embedded credentials (user:password@host)",
        severity: Severity::High,
        regex: r#"(?i)\b(?:https?|ftps?|sftp|smtps?|ldaps?|git|ssh|wss?)://(?P<user>[^:@/\s"'<>]{1,64}):(?P<secret>[a-z0-9._~!$&()*+,;=%\-]{3,128})@[a-z0-9.\-]+"#,
        keywords: &["://"],
        min_entropy: 2.5,
        generic: true,
        examples: &[
            "git clone https://ci:7tkPl9UOVShXzz18YV1vzzFZ@git.internal/repo.git", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    // ---------------------------------------------------------------- AI platforms
    RuleSpec {
        id: "openai-api-key",
        description: "OpenAI API key (user, project, service account or admin)",
        severity: Severity::Critical,
        regex: r"\b(?P<secret>sk-(?:(?:proj|svcacct|admin)-[0-9A-Za-z_\-]{20,}|service-[0-9A-Za-z_\-]+?-[0-9A-Za-z_\-]{20,}|[0-9A-Za-z]{20})T3BlbkFJ[0-9A-Za-z_\-]{20,})",
        keywords: &["T3BlbkFJ"],
        case_sensitive_keywords: true,
        examples: &[
            "OPENAI_API_KEY=sk-proj-ILQvH_nO69othB9KpGzU3HEEmXL1uhLsc4Rr4aKxT3BlbkFJU3f0BJxrxDwzkl-JwAryNzbi0hSQK-lb09rIFxUe", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "openai-realtime-client-secret",
        description: "OpenAI Realtime ephemeral client secret",
        severity: Severity::Low,
        regex: r"\b(?P<secret>ek_[0-9A-Za-z]{32,64})\b",
        keywords: &["ek_"],
        min_entropy: 3.0,
        examples: &[
            "client_secret: ek_5b0be23b7ac193fe0407275539800368", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "anthropic-api-key",
        description: "Anthropic API key",
        severity: Severity::Critical,
        regex: r"\b(?P<secret>sk-ant-(?:api|admin)[0-9]{2}-[0-9A-Za-z_\-]{80,100}AA)",
        keywords: &["sk-ant-"],
        examples: &[
            "ANTHROPIC_API_KEY=sk-ant-api03-c7E4nSmwfIp7-JoppZrDDs7YvcX1eYgURZEQ3PZgPsTF2bUnxiP3zcCr1Y6ffeIIemGpb3EfKoNSvphIk7s4pqL0KJFlKAA", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "huggingface-access-token",
        description: "Hugging Face access token",
        severity: Severity::High,
        regex: r"\b(?P<secret>hf_[0-9A-Za-z]{34,40})\b",
        keywords: &["hf_"],
        min_entropy: 3.0,
        examples: &[
            "HF_TOKEN=hf_ykCpZj6R5aDT6mZck71oe7N3x4ViXC9g77", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "huggingface-org-token",
        description: "Hugging Face organisation API token",
        severity: Severity::High,
        regex: r"\b(?P<secret>api_org_[0-9A-Za-z]{34})\b",
        keywords: &["api_org_"],
        examples: &[
            "token: api_org_y1bOeCvu0oEhOxjvoVdlTCJ4jC3jrAApjb", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    // ---------------------------------------------------------------- other clouds and SaaS
    RuleSpec {
        id: "alibaba-access-key-id",
        description: "Alibaba Cloud AccessKey ID",
        severity: Severity::High,
        regex: r"\b(?P<secret>LTAI[0-9A-Za-z]{20})\b",
        keywords: &["LTAI"],
        case_sensitive_keywords: true,
        examples: &[
            "access_key_id = LTAI1DNSKoPymJTxD5JtNEE0", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "alibaba-secret-key",
        description: "Alibaba Cloud AccessKey secret",
        severity: Severity::High,
        regex: concat!(
            r"(?i)(?:alibaba|aliyun|alicloud)[a-z0-9_.\-]{0,25}",
            assign!(),
            r"(?P<secret>[a-z0-9]{30})\b"
        ),
        keywords: &["alibaba", "aliyun", "alicloud"],
        examples: &[
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET=tbpvom68yzawkpu9u5rsnsdbk9ew2d", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "digitalocean-token",
        description: "DigitalOcean personal access, OAuth or refresh token",
        severity: Severity::Critical,
        regex: r"\b(?P<secret>do[opr]_v1_[a-f0-9]{64})\b",
        keywords: &["dop_v1_", "doo_v1_", "dor_v1_"],
        examples: &[
            "DIGITALOCEAN_TOKEN=dop_v1_13c16fdf5924754ec21ef66b01d4921da2e055c90eb6f2aed4c21a9dbf49a067", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "heroku-api-key",
        description: "Heroku API key",
        severity: Severity::High,
        regex: concat!(
            r"(?i)heroku[a-z0-9_.\-]{0,25}",
            assign!(),
            r"(?P<secret>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b"
        ),
        keywords: &["heroku"],
        examples: &[
            "HEROKU_API_KEY=6944ff77-0e4b-9447-a3d5-4ec6390bf611", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "heroku-api-key-v2",
        description: "Heroku API key (HRKU- format)",
        severity: Severity::High,
        regex: r"\b(?P<secret>HRKU-AA[0-9A-Za-z_\-]{58})",
        keywords: &["HRKU-"],
        case_sensitive_keywords: true,
        examples: &[
            "HEROKU_API_KEY=HRKU-AAJMzoN5ouP47ULvjfb7_kQHn_3_yPbTlKGFkrddYsLVxvnNPWxTODVrVGEh", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "databricks-token",
        description: "Databricks personal access token",
        severity: Severity::High,
        regex: r"\b(?P<secret>dapi[a-f0-9]{32}(?:-[0-9]+)?)\b",
        keywords: &["dapi"],
        examples: &[
            "DATABRICKS_TOKEN=dapie24bdb7ec83756378368f7e732d2e433", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "grafana-api-key",
        description: "Grafana API key",
        severity: Severity::Medium,
        regex: r"\b(?P<secret>eyJrIjoi[0-9A-Za-z_=\-]{72,92})(?:[^0-9A-Za-z_=\-]|$)",
        keywords: &["eyJrIjoi"],
        case_sensitive_keywords: true,
        examples: &[
            "GRAFANA_API_KEY=eyJrIjoiHy1CwVWgHo9RV7jAvQwiRmNN2r01HgV2V7WErYOTO6TiA3gaAXJLhFz9KjA2Yr3NMhy2CSDsUwswzHJM", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "grafana-cloud-token",
        description: "Grafana Cloud API token",
        severity: Severity::High,
        regex: r"\b(?P<secret>glc_[A-Za-z0-9+/]{32,400}={0,2})",
        keywords: &["glc_"],
        examples: &[
            "GRAFANA_CLOUD_TOKEN=glc_XPa/W4MxMs3WDlQPFPA2bdgG/MN33X7TfS5biDm0VZty1+Z4RlvUOUjNwoLR", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "grafana-service-account-token",
        description: "Grafana service account token",
        severity: Severity::High,
        regex: r"\b(?P<secret>glsa_[0-9A-Za-z]{32}_[0-9A-Fa-f]{8})\b",
        keywords: &["glsa_"],
        examples: &[
            "token: glsa_07G4AOkHs0GnG5mAldOKMgwKOOUcSAaY_0909c300", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "shopify-token",
        description: "Shopify access token or shared secret",
        severity: Severity::High,
        regex: r"\b(?P<secret>shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32})\b",
        keywords: &["shpat_", "shpca_", "shppa_", "shpss_"],
        examples: &[
            "SHOPIFY_TOKEN=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", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "atlassian-api-token",
        description: "Atlassian API token",
        severity: Severity::High,
        regex: r"\b(?P<secret>ATATT3[0-9A-Za-z_\-=]{150,250})",
        keywords: &["ATATT3"],
        case_sensitive_keywords: true,
        examples: &[
            "JIRA_API_TOKEN=ATATT35XcgCYf4gEFCfuwOa6M1G-iFXC0NZ_cFlwvTWxaLYUoQXQZip2SFXy7KSE3eJdRtEqlzIq47EuVTBZWAM8AD5qH4VFZBqplIXdsNbXlwDPyniUMyiNlCKqZKTZ7qJwdUS0d7FZTmxLoICfZfu3zMtWfNwD-G3SaoKfgFoeOASl1YCJlS24R5", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "atlassian-legacy-api-token",
        description: "Atlassian (Jira / Confluence) API token, legacy format",
        severity: Severity::High,
        regex: concat!(
            r"(?i)(?:atlassian|confluence|jira)[a-z0-9_.\-]{0,20}",
            assign!(),
            r"(?P<secret>[a-z0-9]{24})\b"
        ),
        keywords: &["atlassian", "confluence", "jira"],
        min_entropy: 3.5,
        examples: &[
            "jira_api_token: 6dn16i5mc9ql8kp8qpdkww0f", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "okta-api-token",
        description: "Okta API token",
        severity: Severity::High,
        regex: concat!(
            r"(?i)okta[a-z0-9_.\-]{0,25}",
            assign!(),
            r"(?P<secret>00[0-9a-z_\-]{40})\b"
        ),
        keywords: &["okta"],
        examples: &[
            "OKTA_API_TOKEN=00huNvNgMXUxIN8zP4ZnHUYOX8IoA50uOftJ80jJYU", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "sentry-auth-token",
        description: "Sentry auth token",
        severity: Severity::High,
        regex: r"\b(?P<secret>sntry[su]_[0-9A-Za-z+/=_]{40,})",
        keywords: &["sntrys_", "sntryu_"],
        examples: &[
            "SENTRY_AUTH_TOKEN=sntrys_DKaEVP2EGvLIyp0OYV3ywTezHrNQR0ueOZIQo7NWqq61E2UwHLEKoje7WHxH", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "newrelic-user-api-key",
        description: "New Relic user API key",
        severity: Severity::High,
        regex: r"\b(?P<secret>NRAK-[A-Z0-9]{27})\b",
        keywords: &["NRAK-"],
        case_sensitive_keywords: true,
        examples: &[
            "NEW_RELIC_API_KEY=NRAK-N7KXPLJ3LCUYX1H0JQYGXW77T2F", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "dynatrace-api-token",
        description: "Dynatrace API token",
        severity: Severity::High,
        regex: r"\b(?P<secret>dt0c01\.[A-Z0-9]{24}\.[A-Z0-9]{64})\b",
        keywords: &["dt0c01."],
        examples: &[
            "DT_API_TOKEN=dt0c01.1JDICK2SOU9JTQU9NJOZCUYJ.SO8FM3JL1VZHCWHN77ES5WB5FM5RT8FMI4ROTCGAWMJTDLVW24PVXLHTE93G9HKZ", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "linear-api-key",
        description: "Linear API key",
        severity: Severity::Medium,
        regex: r"\b(?P<secret>lin_api_[0-9A-Za-z]{40})\b",
        keywords: &["lin_api_"],
        examples: &[
            "LINEAR_API_KEY=lin_api_rzsCShCOEUZlWHjaRixFHQpNxHvZyqbJmaKqdLlt", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "postman-api-key",
        description: "Postman API key",
        severity: Severity::Medium,
        regex: r"\b(?P<secret>PMAK-[a-f0-9]{24}-[a-f0-9]{34})\b",
        keywords: &["PMAK-"],
        case_sensitive_keywords: true,
        examples: &[
            "POSTMAN_API_KEY=PMAK-8a878e2f264d9b1ecb19dd8b-7c46b26a22eccdf03eeddf52ecf4076c19", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "pulumi-access-token",
        description: "Pulumi access token",
        severity: Severity::High,
        regex: r"\b(?P<secret>pul-[a-f0-9]{40})\b",
        keywords: &["pul-"],
        examples: &[
            "PULUMI_ACCESS_TOKEN=pul-ace327203f26e16af1d4d14aa605882ac89cd199", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "planetscale-token",
        description: "PlanetScale password, API or OAuth token",
        severity: Severity::High,
        regex: r"\b(?P<secret>pscale_(?:tkn|pw|oauth)_[0-9A-Za-z_.\-]{32,64})",
        keywords: &["pscale_"],
        examples: &[
            "PLANETSCALE_SERVICE_TOKEN=pscale_tkn_FW3GNzqgAV7_sURz6gObi0PeJC4LzA6Z4AAhx3pgrj", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "doppler-token",
        description: "Doppler token",
        severity: Severity::High,
        regex: r"\b(?P<secret>dp\.(?:pt|st|sa|ct|scim|audit)\.[0-9A-Za-z]{40,44})\b",
        keywords: &["dp."],
        examples: &[
            "DOPPLER_TOKEN=dp.pt.la7UJVZkFoRURVsZnI1kjX6TnHgDgmYf8dAoQ1qT5CR", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "sonarqube-token",
        description: "SonarQube token",
        severity: Severity::Medium,
        regex: r"\b(?P<secret>sq[pua]_[a-f0-9]{40})\b",
        keywords: &["sqp_", "squ_", "sqa_"],
        examples: &[
            "SONAR_TOKEN=sqp_20f1fa2261bd2b5ff4891e5dc9328776e7f1ccac", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "supabase-token",
        description: "Supabase personal access token",
        severity: Severity::High,
        regex: r"\b(?P<secret>sbp_[a-f0-9]{40})\b",
        keywords: &["sbp_"],
        examples: &[
            "SUPABASE_ACCESS_TOKEN=sbp_c27ad909f03fdd9e4a62bce19a285ed7361c5c8a", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "flyio-token",
        description: "Fly.io access token",
        severity: Severity::High,
        regex: r"\b(?P<secret>fo1_[0-9A-Za-z_\-]{43})",
        keywords: &["fo1_"],
        examples: &[
            "FLY_API_TOKEN=fo1_tUvCSYN-OyuYbawnF6GTmWrG1jQ4ILUNWh--UchpW5N", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    // ---------------------------------------------------------------- HashiCorp
    RuleSpec {
        id: "hashicorp-vault-token",
        description: "HashiCorp Vault token",
        severity: Severity::Critical,
        regex: r"\b(?P<secret>hv[sbr]\.[0-9A-Za-z_\-]{24,})",
        keywords: &["hvs.", "hvb.", "hvr."],
        min_entropy: 3.0,
        examples: &[
            "VAULT_TOKEN=hvs.9eejxY8u5YDjUQBNqfBvU7Q7XTOaQ9QDcF6fssIXIiHTremz2mUKEsjMRUFSZQhRP9VFEStrAa6Z5YMvisMNGRjykw", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "hashicorp-terraform-token",
        description: "HashiCorp Terraform Cloud / Enterprise API token",
        severity: Severity::Critical,
        regex: r"\b(?P<secret>[0-9A-Za-z]{14}\.atlasv1\.[0-9A-Za-z_=\-]{60,70})",
        keywords: &["atlasv1."],
        examples: &[
            "token = \"tLwDwXSBU37e1F.atlasv1.OwJGcvIEcBgZ5zKmzEhqgkjRrayIbPdBPPd_ZRwh1flQ-ZG7bdOOh1QulctAslTU2St\"", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    // ---------------------------------------------------------------- configuration files
    RuleSpec {
        id: "maven-master-password",
        description: "Maven master password in settings-security.xml (not encrypted)",
        severity: Severity::High,
        regex: r"<master>[ \t]*(?P<secret>[^<{$\s][^<\s]*)[ \t]*</master>",
        keywords: &["<master>"],
        paths: &[r"(?:^|/)settings-security\.xml$"],
        min_entropy: 2.0,
        examples: &[],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "xml-password-element",
        description: "Plaintext password in an XML element (<password>, <passphrase>)",
        severity: Severity::High,
        // `{...}` is a Maven-encrypted value and `${...}` a reference: neither is plaintext.
        regex: r"(?i)<(?:password|passphrase|passwd)>[ \t]*(?P<secret>[^<{$\s][^<\s]*)[ \t]*</(?:password|passphrase|passwd)>",
        keywords: &["<password>", "<passphrase>", "<passwd>"],
        generic: true,
        examples: &[
            "<server><id>repo</id><password>YKpH5bfNTUHFim0o</password></server>", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "netrc-password",
        description: "Password in a .netrc file",
        severity: Severity::High,
        regex: r"(?i)\bpassword[ \t]+(?P<secret>[^\s]{3,})",
        keywords: &["password"],
        paths: &[r"(?:^|/)[._]netrc$"],
        min_entropy: 2.0,
        generic: true,
        examples: &[],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "dotenv-high-entropy",
        description: "High-entropy value in a .env file",
        severity: Severity::Medium,
        regex: r#"(?m)^[ \t]*(?:export[ \t]+)?(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)[ \t]*=[ \t]*(?P<q>["']?)(?P<secret>[A-Za-z0-9+/=_.:@%\-]{16,256})["']?[ \t]*\r?$"#,
        // No keywords: the path is the context (every value of a .env file is configuration
        // for this deployment, and a random-looking one is a credential).
        paths: &[r"(?:^|/)(?:[^/]*\.env|\.env\.[^/]+)$"],
        min_entropy: 4.0,
        generic: true,
        examples: &[],
        ..RuleSpec::DEFAULT
    },
    // ---------------------------------------------------------------- generic (last)
    RuleSpec {
        id: "generic-secret-assignment",
        description: "Hard-coded secret assigned to a password/secret/token/key name",
        severity: Severity::Medium,
        regex: concat!(
            r#"(?im)(?P<key>"#,
            secret_name!(),
            r#")["']?[ \t]*(?::=|=>|=|:)[ \t]*(?:!![a-z]+[ \t]+)?(?P<q>["'`]?)"#,
            r#"(?P<secret>[a-z0-9!#$%*+./?@^_|~\-][a-z0-9!#$%*+./:=?@^_|~\-]{7,255})"#,
            r#"(?:["'`\s,;)\]}<&]|$)"#
        ),
        keywords: &[
            "passwd",
            "password",
            "passphrase",
            "pwd",
            "secret",
            "token",
            "apikey",
            "api_key",
            "api-key",
            "api.key",
            "accesskey",
            "access_key",
            "access-key",
            "privatekey",
            "private_key",
            "private-key",
            "authkey",
            "auth_key",
            "auth-key",
            "credential",
        ],
        min_entropy: 3.0,
        generic: true,
        examples: &[
            "db_password = \"YKpH5bfNTUHFim0o\"",      // moat:allow
            "client_secret: 7tkPl9UOVShXzz18YV1vzzFZ", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "generic-secret-block",
        description: "Hard-coded secret in the block under a password/secret/token name",
        severity: Severity::Medium,
        // A YAML mapping or an INI continuation: the name ends its line, the value is on one
        // of the next indented lines (bare, or under `secure:` / `value:`).
        regex: concat!(
            r#"(?im)^[ \t]*(?P<key>"#,
            secret_name!(),
            r#")[ \t]*[:=][ \t]*\r?\n(?:[ \t]+[^\n]*\n){0,3}?[ \t]+(?:(?:secure|value|plain|plaintext|password|secret)[ \t]*:[ \t]*)?["']?"#,
            r#"(?P<secret>[a-z0-9+/=_.\-]{12,256})["']?[ \t]*\r?$"#
        ),
        keywords: &[
            "passwd",
            "password",
            "passphrase",
            "pwd",
            "secret",
            "token",
            "apikey",
            "api_key",
            "api-key",
            "credential",
        ],
        min_entropy: 3.5,
        generic: true,
        span: Span::Following(2048),
        examples: &[
            "password:\n    secure: vw3lT3jIVHAQ75sinvRe7AeGa2KQpKBznKUrY2RY", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
    RuleSpec {
        id: "generic-key-literal",
        description: "High-entropy string literal assigned to a *key name",
        severity: Severity::Medium,
        regex: r#"(?i)(?P<key>[a-z0-9_.\-]*key)["']?[ \t]*(?::=|=>|=|:)[ \t]*(?P<q>["'`])(?P<secret>[a-z0-9+/=_\-]{20,100})["'`]"#,
        keywords: &["key"],
        // Random base64-like material only: hex tops out at 4 bits and is usually a hash.
        min_entropy: 4.3,
        generic: true,
        examples: &[
            "signing_key = \"vw3lT3jIVHAQ75sinvRe7AeGa2KQpKBznKUrY2RY\"", // moat:allow
        ],
        ..RuleSpec::DEFAULT
    },
];
