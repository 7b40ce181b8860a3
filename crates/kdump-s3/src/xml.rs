//! The few S3 XML documents this client reads, from untrusted bytes: a small element-tree
//! parser (no recursion, bounded depth and element count, entities decoded, attributes and
//! namespaces ignored) and the typed results built from it. Malformed input is an error,
//! never a panic.

/// Deepest nesting accepted (S3 documents are 3 levels deep).
pub const MAX_DEPTH: usize = 32;
/// Most elements accepted in one document (a 1,000-key listing has about 7,000).
pub const MAX_ELEMENTS: usize = 200_000;

/// An element: its local name (namespace prefix removed), its text and its children.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Local name.
    pub name: String,
    /// Concatenated text directly inside it, entities decoded.
    pub text: String,
    /// Child elements in order.
    pub children: Vec<Element>,
}

impl Element {
    /// The first child named `name`.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    /// The text of the first child named `name`.
    pub fn child_text(&self, name: &str) -> Option<&str> {
        self.child(name).map(|c| c.text.as_str())
    }

    /// All children named `name`.
    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.name == name)
    }
}

/// Parses a document and returns its root element.
pub fn parse(input: &[u8]) -> Result<Element, String> {
    let s = std::str::from_utf8(input).map_err(|e| format!("not UTF-8 at byte {}", e.valid_up_to()))?;
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    let mut rest = s;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('<') {
            if let Some(body) = after.strip_prefix("?") {
                rest = skip_past(body, "?>")?;
            } else if let Some(body) = after.strip_prefix("!--") {
                rest = skip_past(body, "-->")?;
            } else if let Some(body) = after.strip_prefix("![CDATA[") {
                let end = body.find("]]>").ok_or("unterminated CDATA")?;
                let top = stack.last_mut().ok_or("text outside the root element")?;
                top.text.push_str(&body[..end]);
                rest = &body[end + 3..];
            } else if let Some(body) = after.strip_prefix('!') {
                // <!DOCTYPE ...>: no internal subsets in S3 answers; refuse nested brackets.
                let end = body.find('>').ok_or("unterminated declaration")?;
                if body[..end].contains('[') {
                    return Err("a DOCTYPE with an internal subset".into());
                }
                rest = &body[end + 1..];
            } else if let Some(body) = after.strip_prefix('/') {
                let end = body.find('>').ok_or("unterminated end tag")?;
                let name = local(body[..end].trim());
                let el = stack.pop().ok_or("end tag without a start tag")?;
                if el.name != name {
                    return Err(format!("end tag </{name}> closes <{}>", el.name));
                }
                attach(&mut stack, &mut root, el)?;
                rest = &body[end + 1..];
            } else {
                let end = tag_end(after).ok_or("unterminated start tag")?;
                let tag = &after[..end];
                let (tag, empty) = match tag.strip_suffix('/') {
                    Some(t) => (t, true),
                    None => (tag, false),
                };
                let name_end = tag.find(|c: char| c.is_whitespace()).unwrap_or(tag.len());
                let name = local(&tag[..name_end]);
                if name.is_empty() {
                    return Err("a tag without a name".into());
                }
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(format!("more than {MAX_ELEMENTS} elements"));
                }
                if stack.len() >= MAX_DEPTH {
                    return Err(format!("nested deeper than {MAX_DEPTH}"));
                }
                let el = Element { name: name.to_string(), ..Default::default() };
                if empty {
                    attach(&mut stack, &mut root, el)?;
                } else {
                    stack.push(el);
                }
                rest = &after[end + 1..];
            }
        } else {
            let end = rest.find('<').unwrap_or(rest.len());
            let text = &rest[..end];
            match stack.last_mut() {
                Some(top) => decode_into(text, &mut top.text)?,
                None if text.trim().is_empty() => {}
                None => return Err("text outside the root element".into()),
            }
            rest = &rest[end..];
        }
    }
    if let Some(open) = stack.last() {
        return Err(format!("<{}> is not closed", open.name));
    }
    root.ok_or_else(|| "no root element".into())
}

fn skip_past<'a>(s: &'a str, end: &str) -> Result<&'a str, String> {
    s.find(end).map(|i| &s[i + end.len()..]).ok_or_else(|| format!("missing {end:?}"))
}

/// The `>` that ends a start tag, skipping quoted attribute values.
fn tag_end(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i),
            (None, '<') => return None,
            _ => {}
        }
    }
    None
}

fn local(name: &str) -> &str {
    name.rsplit(':').next().unwrap_or(name)
}

fn attach(stack: &mut [Element], root: &mut Option<Element>, el: Element) -> Result<(), String> {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None if root.is_none() => *root = Some(el),
        None => return Err("more than one root element".into()),
    }
    Ok(())
}

fn decode_into(text: &str, out: &mut String) -> Result<(), String> {
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let semi = after.find(';').filter(|&n| n <= 10).ok_or("an unterminated entity")?;
        let ent = &after[..semi];
        let c = match ent {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(h) = ent.strip_prefix("#x").or_else(|| ent.strip_prefix("#X")) {
                    u32::from_str_radix(h, 16).ok()
                } else if let Some(d) = ent.strip_prefix('#') {
                    d.parse::<u32>().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32).ok_or_else(|| format!("unknown entity &{ent};"))?
            }
        };
        out.push(c);
        rest = &after[semi + 1..];
    }
    out.push_str(rest);
    Ok(())
}

/// An S3 `<Error>` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorBody {
    /// `Code`, e.g. `NoSuchBucket`.
    pub code: String,
    /// `Message`.
    pub message: String,
}

/// The `<Error>` in a body, if it is one.
pub fn parse_error(body: &[u8]) -> Option<ErrorBody> {
    let root = parse(body).ok()?;
    (root.name == "Error").then(|| ErrorBody {
        code: root.child_text("Code").unwrap_or("").trim().to_string(),
        message: root.child_text("Message").unwrap_or("").trim().to_string(),
    })
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    /// Key.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// `LastModified` as sent (ISO 8601).
    pub last_modified: String,
}

/// One page of ListObjectsV2.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The objects of this page.
    pub objects: Vec<ObjectEntry>,
    /// Common prefixes (with a delimiter).
    pub prefixes: Vec<String>,
    /// Where the next page starts, when there is one.
    pub next_continuation_token: Option<String>,
}

/// Parses a `ListBucketResult` (ListObjectsV2).
pub fn parse_list_objects(body: &[u8]) -> Result<ListPage, String> {
    let root = parse(body)?;
    if root.name != "ListBucketResult" {
        return Err(format!("expected <ListBucketResult>, got <{}>", root.name));
    }
    let mut page = ListPage::default();
    for c in root.children_named("Contents") {
        let key = c.child_text("Key").ok_or("<Contents> without <Key>")?.to_string();
        let size = match c.child_text("Size") {
            Some(s) => s.trim().parse::<u64>().map_err(|_| format!("bad <Size> {s:?} of {key:?}"))?,
            None => 0,
        };
        let last_modified = c.child_text("LastModified").unwrap_or("").trim().to_string();
        page.objects.push(ObjectEntry { key, size, last_modified });
    }
    for p in root.children_named("CommonPrefixes") {
        if let Some(prefix) = p.child_text("Prefix") {
            page.prefixes.push(prefix.to_string());
        }
    }
    let truncated = root.child_text("IsTruncated").is_some_and(|t| t.trim() == "true");
    if truncated {
        let token = root.child_text("NextContinuationToken").map(str::trim).unwrap_or("");
        if token.is_empty() {
            return Err("a truncated listing without <NextContinuationToken>".into());
        }
        page.next_continuation_token = Some(token.to_string());
    }
    Ok(page)
}

/// The `UploadId` of an `InitiateMultipartUploadResult`.
pub fn parse_upload_id(body: &[u8]) -> Result<String, String> {
    let root = parse(body)?;
    if root.name != "InitiateMultipartUploadResult" {
        return Err(format!("expected <InitiateMultipartUploadResult>, got <{}>", root.name));
    }
    let id = root.child_text("UploadId").map(str::trim).unwrap_or("");
    if id.is_empty() {
        return Err("no <UploadId>".into());
    }
    Ok(id.to_string())
}

/// The (key, upload id) pairs of a `ListMultipartUploadsResult`.
pub fn parse_uploads(body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let root = parse(body)?;
    if root.name != "ListMultipartUploadsResult" {
        return Err(format!("expected <ListMultipartUploadsResult>, got <{}>", root.name));
    }
    Ok(root
        .children_named("Upload")
        .map(|u| {
            (u.child_text("Key").unwrap_or("").to_string(), u.child_text("UploadId").unwrap_or("").trim().to_string())
        })
        .collect())
}

/// Escapes text for an XML element.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_page() {
        let doc = br#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix>p/</Prefix>
<KeyCount>2</KeyCount><MaxKeys>2</MaxKeys><IsTruncated>true</IsTruncated>
<Contents><Key>p/a &amp; b&#x20;&lt;c&gt;</Key><LastModified>2026-12-01T05:00:00.000Z</LastModified>
<ETag>&quot;x&quot;</ETag><Size>12</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key><![CDATA[p/<raw>]]></Key><Size>0</Size></Contents>
<NextContinuationToken>tok/==</NextContinuationToken></ListBucketResult>"#;
        let page = parse_list_objects(doc).unwrap();
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.objects[0].key, "p/a & b <c>");
        assert_eq!(page.objects[0].size, 12);
        assert_eq!(page.objects[0].last_modified, "2026-12-01T05:00:00.000Z");
        assert_eq!(page.objects[1].key, "p/<raw>");
        assert_eq!(page.next_continuation_token.as_deref(), Some("tok/=="));
    }

    #[test]
    fn errors_and_uploads() {
        let e = parse_error(
            b"<?xml version=\"1.0\"?><Error><Code>NoSuchBucket</Code><Message>gone</Message><Resource>/b</Resource></Error>",
        )
        .unwrap();
        assert_eq!((e.code.as_str(), e.message.as_str()), ("NoSuchBucket", "gone"));
        assert!(parse_error(b"<Other/>").is_none());
        assert_eq!(
            parse_upload_id(b"<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>")
                .unwrap(),
            "u1"
        );
        assert_eq!(
            parse_uploads(b"<ListMultipartUploadsResult><Upload><Key>k</Key><UploadId>u</UploadId></Upload></ListMultipartUploadsResult>")
                .unwrap(),
            vec![("k".to_string(), "u".to_string())]
        );
    }

    #[test]
    fn malformed_is_an_error() {
        for bad in [
            &b"<a><b></a>"[..],
            b"<a>",
            b"<a>&bogus;</a>",
            b"<a>&#xD800;</a>",
            b"<a></a><b></b>",
            b"text",
            b"<a",
            b"<!DOCTYPE a [<!ENTITY x 'y'>]><a/>",
            b"\xff<a/>",
            b"</a>",
            b"<>",
        ] {
            assert!(parse(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let deep = "<a>".repeat(MAX_DEPTH + 1);
        assert!(parse(deep.as_bytes()).is_err());
        assert!(parse_list_objects(b"<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>").is_err());
        assert!(
            parse_list_objects(
                b"<ListBucketResult><Contents><Key>k</Key><Size>-1</Size></Contents></ListBucketResult>"
            )
            .is_err()
        );
    }

    #[test]
    fn escape_round_trips() {
        let s = "a<b>&\"c'";
        let doc = format!("<K>{}</K>", escape(s));
        assert_eq!(parse(doc.as_bytes()).unwrap().text, s);
    }
}
