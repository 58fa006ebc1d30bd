//! Repository credential Secrets: the label Kedge selects them by, and how one is chosen for a repository URL
//! (as Argo CD does: an exact `repository` match wins over the longest matching `repo-creds` URL prefix).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;

/// Label that marks a Secret as repository credentials; its value is `repository` (exact URL) or `repo-creds`
/// (URL prefix).
pub const SECRET_TYPE_LABEL: &str = "kedge.dev/secret-type";

/// Label selector that lists every repository credential Secret.
pub const REPOSITORY_SECRET_SELECTOR: &str = "kedge.dev/secret-type in (repository,repo-creds)";

/// The keys of a Secret as text (`stringData` over `data`); values that are not UTF-8 are left out.
pub fn decode_secret(secret: &Secret) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in secret.data.iter().flatten() {
        if let Ok(s) = String::from_utf8(v.0.clone()) {
            out.insert(k.clone(), s);
        }
    }
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

/// The decoded keys of the Secret that holds credentials for `url`, if any. Both the Secret's `url` key and `url`
/// go through `normalize` before they are compared.
pub fn select_repository_secret(
    secrets: &[Secret],
    url: &str,
    normalize: impl Fn(&str) -> String,
) -> Option<BTreeMap<String, String>> {
    let wanted = normalize(url);
    let mut best: Option<(usize, BTreeMap<String, String>)> = None;
    for s in secrets {
        let kind = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SECRET_TYPE_LABEL))
            .map(String::as_str);
        let data = decode_secret(s);
        let Some(secret_url) = data.get("url").map(|u| normalize(u)) else {
            continue;
        };
        let score = match kind {
            Some("repository") if secret_url == wanted => usize::MAX,
            Some("repo-creds") if wanted.starts_with(&secret_url) => secret_url.len(),
            _ => continue,
        };
        if best.as_ref().is_none_or(|(b, _)| score > *b) {
            best = Some((score, data));
        }
    }
    best.map(|(_, data)| data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn secret(kind: &str, url: &str, user: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                labels: Some([(SECRET_TYPE_LABEL.to_owned(), kind.to_owned())].into()),
                ..Default::default()
            },
            string_data: Some(
                [
                    ("url".to_owned(), url.to_owned()),
                    ("username".to_owned(), user.to_owned()),
                ]
                .into(),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn exact_repository_wins_over_the_longest_prefix() {
        let lower = |s: &str| s.to_ascii_lowercase();
        let secrets = vec![
            secret("repo-creds", "https://git.test/", "org"),
            secret("repo-creds", "https://git.test/team/", "team"),
            secret("repository", "https://git.test/team/app", "app"),
        ];
        let pick = |url| {
            select_repository_secret(&secrets, url, lower).and_then(|d| d.get("username").cloned())
        };
        assert_eq!(pick("https://git.test/team/app").as_deref(), Some("app"));
        assert_eq!(pick("https://git.test/team/other").as_deref(), Some("team"));
        assert_eq!(pick("https://git.test/x").as_deref(), Some("org"));
        assert_eq!(pick("https://elsewhere.test/x"), None);
    }
}
