//! C2SP signed notes (c2sp.org/signed-note) with Ed25519 keys, byte for byte
//! as Go's `golang.org/x/mod/sumdb/note` writes and reads them, so that Go
//! tooling (and any C2SP verifier) accepts our checkpoints.
//!
//! A note is its text (UTF-8, newline-terminated, no control character but
//! newline), a blank line, and one line per signature:
//! `— <name> <base64(key id (4 bytes, big endian) || signature)>`. The key id
//! is the first 4 bytes of `SHA-256(name || "\n" || 0x01 || public key)`, 0x01
//! being the Ed25519 algorithm byte. A verifier key is written
//! `<name>+<key id, 8 hex digits>+<base64(0x01 || public key)>`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

/// The signature algorithm byte of Ed25519 in key ids and key encodings.
pub const ALG_ED25519: u8 = 0x01;
/// What starts a signature line: U+2014 EM DASH and a space.
const SIG_PREFIX: &str = "\u{2014} ";
/// Go's limit on signature lines, against notes built to waste time.
const MAX_SIGNATURES: usize = 100;

/// Why a note, a key or a signature was refused. Each names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    #[error("key name {0:?} is invalid: it must be non-empty, without spaces and without '+'")]
    InvalidName(String),
    #[error("note text must end with a newline")]
    TextNotTerminated,
    #[error("note text is empty")]
    EmptyText,
    #[error(
        "note has a control character (byte {byte:#04x}) at byte offset {offset}; only newline is allowed"
    )]
    ControlCharacter { offset: usize, byte: u8 },
    #[error("note is not UTF-8 (first bad byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("note has no blank line before its signatures")]
    NoSignatureBlock,
    #[error("note's signature block is empty or does not end with a newline")]
    UnterminatedSignatures,
    #[error("signature line {line} does not start with an em dash and a space")]
    SignaturePrefix { line: usize },
    #[error("signature line {line}: {reason}")]
    MalformedSignature { line: usize, reason: &'static str },
    #[error("note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
    #[error("verifier key is malformed: {0}")]
    MalformedVerifierKey(&'static str),
    #[error("verifier key id {stated:08x} does not match its name and key (which give {computed:08x})")]
    KeyIdMismatch { stated: u32, computed: u32 },
    #[error("key algorithm {0:#04x} is not Ed25519 (0x01)")]
    UnknownAlgorithm(u8),
    #[error("signer key is malformed: {0}")]
    MalformedSignerKey(&'static str),
    #[error("note has no signature by key {name}+{id:08x}")]
    NotSignedByKey { name: String, id: u32 },
    #[error("the signature by {name}+{id:08x} does not verify: the note was changed or forged")]
    BadSignature { name: String, id: u32 },
}

/// Go's `isValidName`: non-empty, no Unicode space, no `+`.
pub fn check_name(name: &str) -> Result<(), NoteError> {
    if name.is_empty() || name.chars().any(char::is_whitespace) || name.contains('+') {
        return Err(NoteError::InvalidName(name.to_owned()));
    }
    Ok(())
}

/// The key id of an Ed25519 public key under `name`.
pub fn key_id(name: &str, public: &[u8; 32]) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public);
    let sum: [u8; 32] = h.finalize().into();
    u32::from_be_bytes([sum[0], sum[1], sum[2], sum[3]])
}

/// A public key that checks notes, with its name and id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    name: String,
    id: u32,
    key: VerifyingKey,
}

impl VerifierKey {
    /// Parses `<name>+<8 hex digits>+<base64(0x01 || 32-byte key)>`.
    pub fn parse(text: &str) -> Result<VerifierKey, NoteError> {
        let (name, rest) = text
            .split_once('+')
            .ok_or(NoteError::MalformedVerifierKey("no '+' after the name"))?;
        let (id_hex, key64) = rest
            .split_once('+')
            .ok_or(NoteError::MalformedVerifierKey("no '+' after the key id"))?;
        check_name(name)?;
        let stated =
            parse_key_id(id_hex).ok_or(NoteError::MalformedVerifierKey("key id is not 8 hex digits"))?;
        let raw = STANDARD
            .decode(key64)
            .map_err(|_| NoteError::MalformedVerifierKey("key is not standard padded base64"))?;
        let (&alg, key) = raw
            .split_first()
            .ok_or(NoteError::MalformedVerifierKey("key is empty"))?;
        if alg != ALG_ED25519 {
            return Err(NoteError::UnknownAlgorithm(alg));
        }
        let key: &[u8; 32] = key
            .try_into()
            .map_err(|_| NoteError::MalformedVerifierKey("an Ed25519 key is 32 bytes"))?;
        let computed = key_id(name, key);
        if computed != stated {
            return Err(NoteError::KeyIdMismatch { stated, computed });
        }
        let key = VerifyingKey::from_bytes(key)
            .map_err(|_| NoteError::MalformedVerifierKey("not a point of the Ed25519 curve"))?;
        Ok(VerifierKey {
            name: name.to_owned(),
            id: stated,
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// Checks `note` and returns its text: at least one signature line must
    /// carry this key's name and id, and every such line must verify.
    /// Signatures by other keys are allowed and ignored (a note may be
    /// cosigned by witnesses).
    pub fn open<'n>(&self, note: &'n str) -> Result<&'n str, NoteError> {
        let parsed = parse(note)?;
        let mut verified = false;
        for sig in parsed
            .signatures
            .iter()
            .filter(|s| s.name == self.name && s.id == self.id)
        {
            let good = Signature::from_slice(&sig.signature)
                .is_ok_and(|s| self.key.verify(parsed.text.as_bytes(), &s).is_ok());
            if !good {
                return Err(NoteError::BadSignature {
                    name: self.name.clone(),
                    id: self.id,
                });
            }
            verified = true;
        }
        if !verified {
            return Err(NoteError::NotSignedByKey {
                name: self.name.clone(),
                id: self.id,
            });
        }
        Ok(parsed.text)
    }
}

impl std::fmt::Display for VerifierKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{:08x}+{}", self.name, self.id, STANDARD.encode(raw))
    }
}

/// Exactly 8 hex digits (Go accepts either case).
fn parse_key_id(hex: &str) -> Option<u32> {
    if hex.len() != 8 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// A private key that signs notes under a name.
pub struct Signer {
    name: String,
    id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the seed.
        write!(f, "Signer({}+{:08x})", self.name, self.id)
    }
}

impl Signer {
    /// The signer of the Ed25519 key with this 32-byte seed (RFC 8032).
    pub fn from_seed(name: &str, seed: &[u8; 32]) -> Result<Signer, NoteError> {
        check_name(name)?;
        let key = SigningKey::from_bytes(seed);
        let id = key_id(name, key.verifying_key().as_bytes());
        Ok(Signer {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// Parses Go's signer key text:
    /// `PRIVATE+KEY+<name>+<8 hex digits>+<base64(0x01 || 32-byte seed)>`.
    pub fn parse(text: &str) -> Result<Signer, NoteError> {
        let rest = text
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(NoteError::MalformedSignerKey("does not start with PRIVATE+KEY+"))?;
        let (name, rest) = rest
            .split_once('+')
            .ok_or(NoteError::MalformedSignerKey("no '+' after the name"))?;
        let (id_hex, seed64) = rest
            .split_once('+')
            .ok_or(NoteError::MalformedSignerKey("no '+' after the key id"))?;
        let stated =
            parse_key_id(id_hex).ok_or(NoteError::MalformedSignerKey("key id is not 8 hex digits"))?;
        let raw = STANDARD
            .decode(seed64)
            .map_err(|_| NoteError::MalformedSignerKey("seed is not standard padded base64"))?;
        let (&alg, seed) = raw
            .split_first()
            .ok_or(NoteError::MalformedSignerKey("seed is empty"))?;
        if alg != ALG_ED25519 {
            return Err(NoteError::UnknownAlgorithm(alg));
        }
        let seed: &[u8; 32] = seed
            .try_into()
            .map_err(|_| NoteError::MalformedSignerKey("an Ed25519 seed is 32 bytes"))?;
        let signer = Signer::from_seed(name, seed)?;
        if signer.id != stated {
            return Err(NoteError::KeyIdMismatch {
                stated,
                computed: signer.id,
            });
        }
        Ok(signer)
    }

    /// Go's signer key text (see [`Signer::parse`]): secret.
    pub fn to_private_text(&self) -> String {
        let mut raw = vec![ALG_ED25519];
        raw.extend_from_slice(self.key.as_bytes());
        format!(
            "PRIVATE+KEY+{}+{:08x}+{}",
            self.name,
            self.id,
            STANDARD.encode(raw)
        )
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn id(&self) -> u32 {
        self.id
    }

    /// The public half, as a verifier key.
    pub fn verifier(&self) -> VerifierKey {
        VerifierKey {
            name: self.name.clone(),
            id: self.id,
            key: self.key.verifying_key(),
        }
    }

    /// The signed note of `text`: the text, a blank line, our signature line.
    pub fn sign(&self, text: &str) -> Result<String, NoteError> {
        check_text(text)?;
        let signature = self.key.sign(text.as_bytes()).to_bytes();
        let mut blob = self.id.to_be_bytes().to_vec();
        blob.extend_from_slice(&signature);
        Ok(format!(
            "{text}\n{SIG_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        ))
    }
}

/// A note's text and signature lines, not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note<'n> {
    pub text: &'n str,
    pub signatures: Vec<NoteSignature>,
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub id: u32,
    /// The signature bytes after the key id (64 for Ed25519).
    pub signature: Vec<u8>,
}

/// Go's rules for note text: non-empty, newline-terminated, UTF-8 (a `&str`
/// already is), no control character but newline.
fn check_text(text: &str) -> Result<(), NoteError> {
    if text.is_empty() {
        return Err(NoteError::EmptyText);
    }
    if !text.ends_with('\n') {
        return Err(NoteError::TextNotTerminated);
    }
    check_controls(text)
}

fn check_controls(text: &str) -> Result<(), NoteError> {
    match text.bytes().enumerate().find(|&(_, b)| b < 0x20 && b != b'\n') {
        Some((offset, byte)) => Err(NoteError::ControlCharacter { offset, byte }),
        None => Ok(()),
    }
}

/// Splits a note into text and signature lines, checking its form (as Go's
/// `note.Open` does) but not the signatures.
pub fn parse(note: &str) -> Result<Note<'_>, NoteError> {
    check_controls(note)?;
    let split = note.rfind("\n\n").ok_or(NoteError::NoSignatureBlock)?;
    let (text, sigs) = (&note[..split + 1], &note[split + 2..]);
    if sigs.is_empty() || !sigs.ends_with('\n') {
        return Err(NoteError::UnterminatedSignatures);
    }
    let mut signatures = Vec::new();
    for (i, line) in sigs[..sigs.len() - 1].split('\n').enumerate() {
        let line_no = i + 1;
        if line_no > MAX_SIGNATURES {
            return Err(NoteError::TooManySignatures);
        }
        signatures.push(parse_signature_line(line, line_no)?);
    }
    Ok(Note { text, signatures })
}

/// Parses bytes as a note, naming where they stop being UTF-8.
pub fn parse_bytes(note: &[u8]) -> Result<Note<'_>, NoteError> {
    let text = std::str::from_utf8(note).map_err(|e| NoteError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    parse(text)
}

fn parse_signature_line(line: &str, line_no: usize) -> Result<NoteSignature, NoteError> {
    let bad = |reason| NoteError::MalformedSignature {
        line: line_no,
        reason,
    };
    let rest = line
        .strip_prefix(SIG_PREFIX)
        .ok_or(NoteError::SignaturePrefix { line: line_no })?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or(bad("no space between name and signature"))?;
    if check_name(name).is_err() {
        return Err(bad("the key name is empty or has spaces or '+'"));
    }
    if b64.is_empty() {
        return Err(bad("the signature is empty"));
    }
    let raw = STANDARD
        .decode(b64)
        .map_err(|_| bad("the signature is not standard padded base64"))?;
    if raw.len() < 5 {
        return Err(bad("the signature is shorter than a key id and one byte"));
    }
    let (id, signature) = raw.split_at(4);
    Ok(NoteSignature {
        name: name.to_owned(),
        id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
        signature: signature.to_vec(),
    })
}
