//! Apache's MD5 password hash (`$apr1$`): the FreeBSD `md5crypt` algorithm with Apache's magic
//! string, as `htpasswd -m` writes it (APR's `apr_md5_encode`).

use md5::{Digest as _, Md5};

const MAGIC: &str = "$apr1$";
const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The full `$apr1$salt$hash` string for `password` with `salt` (at most 8 characters used).
pub fn crypt(password: &str, salt: &str) -> String {
    let pw = password.as_bytes();
    let salt = salt.get(..salt.len().min(8)).unwrap_or(salt);
    let mut ctx = Md5::new();
    ctx.update(pw);
    ctx.update(MAGIC.as_bytes());
    ctx.update(salt.as_bytes());
    let alternate = Md5::new()
        .chain_update(pw)
        .chain_update(salt.as_bytes())
        .chain_update(pw)
        .finalize();
    let mut left = pw.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alternate[..n]);
        left -= n;
    }
    let mut bits = pw.len();
    while bits > 0 {
        if bits & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&pw[..1]);
        }
        bits >>= 1;
    }
    let mut sum = ctx.finalize();
    for round in 0..1000 {
        let mut step = Md5::new();
        if round & 1 == 1 {
            step.update(pw);
        } else {
            step.update(sum);
        }
        if round % 3 != 0 {
            step.update(salt.as_bytes());
        }
        if round % 7 != 0 {
            step.update(pw);
        }
        if round & 1 == 1 {
            step.update(sum);
        } else {
            step.update(pw);
        }
        sum = step.finalize();
    }
    let mut out = String::with_capacity(MAGIC.len() + salt.len() + 23);
    out.push_str(MAGIC);
    out.push_str(salt);
    out.push('$');
    let b = |i: usize| u32::from(sum[i]);
    for (x, y, z) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        push64(&mut out, (b(x) << 16) | (b(y) << 8) | b(z), 4);
    }
    push64(&mut out, b(11), 2);
    out
}

fn push64(out: &mut String, mut value: u32, count: usize) {
    for _ in 0..count {
        out.push(char::from(ITOA64[(value & 0x3f) as usize]));
        value >>= 6;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apaches_documented_example() {
        assert_eq!(
            crypt("myPassword", "r31....."),
            "$apr1$r31.....$HqJZimcKQFAMYayBlzkrA/"
        );
    }
}
