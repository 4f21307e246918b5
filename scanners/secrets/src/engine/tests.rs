//! The engine's unit tests: rules compile, each filter, excerpts and masking, overlaps.

use super::excerpt::*;
use super::filters::*;
use super::*;
use crate::Severity;

fn scan(path: &str, text: &str) -> Vec<Finding> {
    Scanner::builtin()
        .unwrap()
        .scan_bytes(path, text.as_bytes())
}

fn rules_of(path: &str, text: &str) -> Vec<&'static str> {
    scan(path, text).into_iter().map(|f| f.rule).collect()
}

#[test]
fn builtin_rules_compile_and_are_many() {
    let scanner = Scanner::builtin().unwrap();
    let ids: Vec<_> = scanner.rules().map(|r| r.id).collect();
    assert!(ids.len() >= 60, "only {} rules", ids.len());
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "duplicate rule ids");
    for rule in scanner.rules() {
        assert!(!rule.description.is_empty(), "{}", rule.id);
    }
}

#[test]
fn every_example_is_found_by_its_rule() {
    let scanner = Scanner::builtin().unwrap();
    for rule in scanner.rules() {
        for example in rule.examples {
            // The examples carry no marker themselves (the marker is on the source line).
            let found = scanner.scan_bytes("example.txt", example.as_bytes());
            assert!(
                found.iter().any(|f| f.rule == rule.id),
                "{}: example not found (got {:?})",
                rule.id,
                found.iter().map(|f| f.rule).collect::<Vec<_>>()
            );
        }
    }
}

#[test]
fn keywords_are_literal_parts_of_the_examples() {
    // A keyword that does not occur in a match would hide the rule behind the prefilter.
    for rule in builtin_rules() {
        for example in rule.examples {
            let hay = if rule.case_sensitive_keywords {
                example.to_string()
            } else {
                example.to_ascii_lowercase()
            };
            assert!(
                rule.keywords.iter().any(|k| {
                    let k = if rule.case_sensitive_keywords {
                        k.to_string()
                    } else {
                        k.to_ascii_lowercase()
                    };
                    hay.contains(&k)
                }),
                "{}: no keyword in example",
                rule.id
            );
        }
    }
}

#[test]
fn finding_has_location_fingerprint_and_masked_excerpt() {
    let text = "first line\n  let t = \"ghp_fwA94hJ9WnywX0t0ZBfdTEmxI6CmuxV5EbOA\";\n"; // moat:allow
    let found = scan("src/a.rs", text);
    assert_eq!(found.len(), 1);
    let f = &found[0];
    assert_eq!(
        (f.rule, f.line, f.column, f.end_line),
        ("github-pat", 2, 12, 2)
    );
    assert_eq!(f.severity, Severity::Critical);
    assert_eq!(f.fingerprint.len(), 64);
    assert_eq!(f.excerpt, "let t = \"ghp_***EbOA\";");
    assert!(!f.excerpt.contains("fwA94hJ9"));
}

#[test]
fn every_secret_on_the_line_is_masked_in_each_excerpt() {
    let text = "a=AKIAUJZDE8GXD6NCF10E b=ghp_fwA94hJ9WnywX0t0ZBfdTEmxI6CmuxV5EbOA\n"; // moat:allow
    let found = scan("x.env.txt", text);
    assert_eq!(found.len(), 2);
    for f in &found {
        assert!(!f.excerpt.contains("UJZDE8GXD6NCF1"), "{}", f.excerpt);
        assert!(!f.excerpt.contains("fwA94hJ9Wnyw"), "{}", f.excerpt);
    }
}

#[test]
fn fingerprint_ignores_position_but_not_file_or_rule() {
    let key = "AKIAUJZDE8GXD6NCF10E"; // moat:allow
    let a = scan("a.txt", &format!("k={key}\n"));
    let b = scan("a.txt", &format!("\n\n// moved\nk = {key}\n"));
    let c = scan("b.txt", &format!("k={key}\n"));
    assert_eq!(a[0].fingerprint, b[0].fingerprint);
    assert_ne!(a[0].fingerprint, c[0].fingerprint);
    assert_eq!(b[0].line, 4);
}

#[test]
fn specific_rule_wins_over_generic_on_the_same_bytes() {
    let text = "token = \"ghp_fwA94hJ9WnywX0t0ZBfdTEmxI6CmuxV5EbOA\"\n"; // moat:allow
    let found = scan("a.py", text);
    assert_eq!(
        found.iter().map(|f| f.rule).collect::<Vec<_>>(),
        ["github-pat"]
    );
}

#[test]
fn word_boundaries_keep_wrapped_tokens_out() {
    assert!(rules_of("a", "Sogho_ICANVASRENDERINGVIACONTEXT2D3D5D7D8D\n").is_empty());
    assert!(rules_of("a", "ask_live_superlive1\nabcdexoxb-1234567890\n").is_empty());
    assert!(
        rules_of(
            "a",
            "_call_hf_processorz1DeepseekOCRMultiModalProcessor._call_hf\n"
        )
        .is_empty()
    );
}

#[test]
fn generic_rule_filters_placeholders_and_code() {
    for line in [
        "password = \"${DB_PASSWORD}\"",
        "password: changeme123",
        "secret=\"othervalue\"",
        "password: \"123456789\"",
        "password = self.password",
        "fn new(secret: SecretKey) -> Self",
        "token: ${{ secrets.GITHUB_TOKEN }}",
        "password_hash = \"c2VjcmV0IG1lc3NhZ2Ugc28g\"",
        "secretName: my-app-credentials-2",
        "DB_PASSWORD: { sealed: \"moat:v1:AGE-ENCRYPTED-abcdef0123\" }",
        "private_key: ./keys/deploy_rsa.pem",
        "api_key = os.environ[\"API_KEY\"]",
        "token::Token2Kind",
        "token_type: \"client_credentials\"",
        "secret_backend = 'kubernetes'",
        "ClientTrafficSecret => \"CLIENT_TRAFFIC_SECRET_0\",",
        "postgres://app:app@localhost/app",
        "mongodb://user:${MONGO_PASSWORD}@db/x",
    ] {
        assert!(
            rules_of("a.py", line).is_empty(),
            "{line}: {:?}",
            rules_of("a.py", line)
        );
    }
}

#[test]
fn generic_rule_finds_assigned_literals() {
    for (path, line) in [
        ("a.ini", "password = 123456789a1234"),
        ("a.php", "secret = 'notHighEnoughEntropy'"), // moat:allow
        ("a.ts", "const dbPassword = \"Sup3r-S3cret!2024\";"),
        (
            "a.yaml",
            "SECRET_KEY: vh987tyw9ehy8ghis7vwyhiwbwitefy7w3ASDG",
        ),
        ("a.sh", "export API_TOKEN=Xk9vQ2mZr7LpW4tB"),
    ] {
        assert_eq!(
            rules_of(path, line),
            ["generic-secret-assignment"],
            "{line}"
        );
    }
    // In a program's source, an unquoted value is an expression.
    for line in [
        "frag_token: c_uint32,",
        "let tokens = quote_spanned! {",
        "x = Token2Kind9",
    ] {
        assert!(rules_of("src/lib.rs", line).is_empty(), "{line}");
    }
}

#[test]
fn block_rule_finds_values_under_a_secret_name() {
    let yaml = "deploy:\n    password:\n        secure: thequickbrownfoxjumpsoverthelazydog\n";
    let found = scan("a.yml", yaml);
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].rule, found[0].line), ("generic-secret-block", 3));
    let ini = "[s]\nsecrets_for_no_one =\n    hunter2\n    BEEF0123456789a\n";
    let found = scan("a.ini", ini);
    assert_eq!((found[0].rule, found[0].line), ("generic-secret-block", 4));
    let words = "secrets:\n  api:\n    secret: \"permission_address_stack\"\n";
    assert!(scan("a.yml", words).is_empty());
    // Kubernetes references are not values.
    let k8s = "env:\n  - name: DB_PASSWORD\n    valueFrom:\n      secretKeyRef:\n        name: db-credentials\n        key: password\n";
    assert!(scan("deploy.yaml", k8s).is_empty());
}

#[test]
fn path_rules_apply_to_their_files_only() {
    let env = "APP=demo\nSIGNING=qtCEpKeWKqXJiIBCNmUkUcjpPBa6r5Jh\n"; // moat:allow
    assert_eq!(rules_of("svc/.env", env), ["dotenv-high-entropy"]);
    assert_eq!(rules_of("config.env", env), ["dotenv-high-entropy"]);
    assert!(rules_of("notes.txt", env).is_empty());
    let netrc = "machine git.internal login ci password Xk9vQ2mZr7LpW4tB\n"; // moat:allow
    assert_eq!(rules_of(".netrc", netrc), ["netrc-password"]);
    let master = "<settingsSecurity>\n<master>plainMaster</master>\n</settingsSecurity>\n";
    assert_eq!(
        rules_of("settings-security.xml", master),
        ["maven-master-password"]
    );
    assert!(rules_of("other.xml", master).is_empty());
}

#[test]
fn required_context_gates_a_rule() {
    let pem = "-----BEGIN PRIVATE KEY-----\\n5ef7o9CLRQDBAKdCwdI2ViJloZX0ChVQGj9r366yRyoZvKyjc4zzHzLcciTA1bHT\\n-----END PRIVATE KEY-----\\n"; // moat:allow
    let sa = format!(
        "{{\"type\": \"service_account\", \"client_email\": \"a@b\", \"private_key\": \"{pem}\"}}"
    );
    assert_eq!(rules_of("sa.json", &sa), ["gcp-service-account-key"]);
    let plain = format!("{{\"private_key\": \"{pem}\"}}");
    assert_eq!(rules_of("k.json", &plain), ["private-key"]);
}

#[test]
fn multi_line_key_reports_its_begin_line_and_span() {
    let text = "x\n-----BEGIN EC PRIVATE KEY-----\r\n5ef7o9CLRQDBAKdCwdI2ViJloZX0ChVQGj9r\r\n366yRyoZvKyjc4zzHzLcciTA1bHT\r\n-----END EC PRIVATE KEY-----\r\n"; // moat:allow
    let found = scan("k.pem", text);
    assert_eq!(found.len(), 1);
    assert_eq!((found[0].line, found[0].end_line), (2, 5));
    assert_eq!(found[0].excerpt, "-----BEGIN EC PRIVATE KEY-----***");
    let lf = text.replace("\r\n", "\n");
    assert_eq!(scan("k.pem", &lf)[0].fingerprint, found[0].fingerprint);
}

#[test]
fn long_lines_are_searched_around_the_hits() {
    let mut text = "x".repeat(100_000);
    text.push_str(" key=ghp_fwA94hJ9WnywX0t0ZBfdTEmxI6CmuxV5EbOA "); // moat:allow
    text.push_str(&"y".repeat(100_000));
    let found = scan("min.js", &text);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].column, 100_006);
    assert!(found[0].excerpt.chars().count() <= EXCERPT_MAX + 2);
}

#[test]
fn a_line_full_of_tokens_stays_linear() {
    let token = "ghp_fwA94hJ9WnywX0t0ZBfdTEmxI6CmuxV5EbOA"; // moat:allow
    let line = format!("{token} ").repeat(50_000);
    let started = std::time::Instant::now();
    let found = scan("dump.txt", &line);
    assert_eq!(found.len(), MAX_FINDINGS_PER_FILE);
    assert_eq!(found[1].column, 42);
    assert!(found[999].excerpt.starts_with('…') && found[999].excerpt.ends_with('…'));
    // Generous even for an unoptimised build; quadratic work would take minutes.
    assert!(started.elapsed().as_secs() < 20);
}

#[test]
fn inline_markers_suppress_their_line_only() {
    let text = "a = 'AKIAUJZDE8GXD6NCF10E' # moat:allow\nb = 'AKIAUJZDE8GXD6NCF10F'\n"; // moat:allow
    let scanner = Scanner::builtin().unwrap();
    let mut scratch = Scratch::new(scanner);
    let all = scanner.scan_file("a.py", text.as_bytes(), &mut scratch);
    assert_eq!(all.len(), 2);
    assert!(all[0].inline_allowed && !all[1].inline_allowed);
    assert_eq!(scan("a.py", text).len(), 1);
}

#[test]
fn masks_never_show_more_than_an_eighth() {
    assert_eq!(mask(b"short"), "***");
    assert_eq!(mask(b"0123456789abcdef"), "01***ef");
    assert_eq!(mask(&[b'a'; 100]), "aaaa***aaaa");
}

#[test]
fn entropy_and_names() {
    assert_eq!(entropy(b"aaaa"), 0.0);
    assert!((entropy(b"ab") - 1.0).abs() < 1e-9);
    assert_eq!(split_words(b"dbPasswordHash"), ["db", "password", "hash"]);
    assert_eq!(split_words(b"SECRET_KEY_ID"), ["secret", "key", "id"]);
    assert!(name_is_not_secret(b"foreign_key_id"));
    assert!(!name_is_not_secret(b"admin_password"));
    assert!(!name_is_not_secret(b"real_secret_which_isnt_an_i_d"));
}
