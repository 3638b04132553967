//! Profile photos: sniffed by content, stripped of EXIF, stored encrypted, served as
//! attachments within the clinic only.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Caller, Reply, TestApp};

/// A tiny but well-formed JPEG (1x1) whose EXIF segment carries a GPS position.
pub(crate) fn jpeg_with_gps() -> Vec<u8> {
    let mut jpeg = vec![0xFF, 0xD8];
    jpeg.extend([
        0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0, 1, 1, 0, 0, 1, 0, 1, 0, 0,
    ]);
    let exif = b"Exif\0\0MM\0*\0\0\0\x08 GPSLatitude -23.5505 GPSLongitude -46.6333";
    jpeg.extend([0xFF, 0xE1]);
    jpeg.extend(((exif.len() + 2) as u16).to_be_bytes());
    jpeg.extend(exif);
    jpeg.extend([0xFF, 0xFE, 0x00, 0x0E]);
    jpeg.extend(b"shot at home");
    jpeg.extend([0xFF, 0xDB, 0x00, 0x43, 0x00]);
    jpeg.extend([1u8; 64]);
    jpeg.extend([
        0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x01, 0x00, 0x01, 0x03, 0x01, 0x11, 0x00, 0x02, 0x11,
        0x00, 0x03, 0x11, 0x00,
    ]);
    jpeg.extend([
        0xFF, 0xDA, 0x00, 0x0C, 0x03, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x00, 0x3F, 0x00,
    ]);
    jpeg.extend([0x12, 0x34, 0x56, 0x78]);
    jpeg.extend([0xFF, 0xD9]);
    jpeg
}

async fn upload(caller: &Caller, patient: &str, bytes: Vec<u8>, content_type: &str) -> Reply {
    let response = caller
        .raw(Method::PUT, &format!("/api/v1/patients/{patient}/photo"))
        .header("content-type", content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    Reply::from(response).await
}

async fn new_patient(caller: &Caller) -> String {
    let reply = caller
        .post("/api/v1/patients", json!({"full_name": "Paciente Foto"}))
        .await;
    reply.body["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_photo_loses_its_gps_and_is_stored_encrypted() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let patient = new_patient(&owner).await;

    let stored = upload(&owner, &patient, jpeg_with_gps(), "image/jpeg").await;
    assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.body);
    assert_eq!(stored.body["content_type"], "image/jpeg");
    assert_eq!(
        (
            stored.body["width"].as_i64(),
            stored.body["height"].as_i64()
        ),
        (Some(1), Some(1))
    );

    let response = owner
        .raw(Method::GET, &format!("/api/v1/patients/{patient}/photo"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    let bytes = response.bytes().await.unwrap();
    assert_eq!(&bytes[..2], &[0xFF, 0xD8]);
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(b"GPSLatitude") && !contains(b"Exif") && !contains(b"shot at home"));
    assert!(
        contains(&[0x12, 0x34, 0x56, 0x78]),
        "the image itself is kept"
    );

    // On disk there is only ciphertext.
    let dir = app.kernel.config.storage.path.clone();
    let mut files = vec![dir];
    let mut found = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            found += 1;
            let raw = std::fs::read(&path).unwrap();
            assert!(
                !raw.windows(4).any(|w| w == b"JFIF"),
                "a plaintext image on disk"
            );
        }
    }
    assert_eq!(found, 1);

    let patient_view = owner.get(&format!("/api/v1/patients/{patient}")).await;
    assert_eq!(patient_view.body["photo_id"], stored.body["id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn files_that_are_not_images_are_refused_whatever_they_claim() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let patient = new_patient(&owner).await;
    let cases: [(&[u8], &str); 5] = [
        (b"just some text", "image/jpeg"),
        (
            b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>",
            "image/svg+xml",
        ),
        (
            b"<!DOCTYPE html><html><script>alert(1)</script></html>",
            "image/png",
        ),
        (b"%PDF-1.7\n1 0 obj\n<<>>\nendobj\n", "image/jpeg"),
        (
            b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0",
            "application/octet-stream",
        ),
    ];
    for (bytes, claimed) in cases {
        let reply = upload(&owner, &patient, bytes.to_vec(), claimed).await;
        assert_eq!(
            reply.status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{claimed}: {}",
            reply.body
        );
        assert_eq!(reply.code(), "unsupported_file_type");
    }
    // A JPEG header with nothing behind it is refused too, and nothing was stored.
    let truncated = upload(
        &owner,
        &patient,
        vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00],
        "image/jpeg",
    )
    .await;
    assert!(truncated.status.is_client_error());
    assert_eq!(
        owner
            .get(&format!("/api/v1/patients/{patient}/photo"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn photos_stay_in_their_clinic_and_die_with_the_patients_key() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let intruder = app.signup("Clínica Boreal").await;
    let patient = new_patient(&owner).await;
    assert_eq!(
        upload(&owner, &patient, jpeg_with_gps(), "image/jpeg")
            .await
            .status,
        StatusCode::CREATED
    );

    assert_eq!(
        intruder
            .get(&format!("/api/v1/patients/{patient}/photo"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let overwrite = upload(&intruder, &patient, jpeg_with_gps(), "image/jpeg").await;
    assert_eq!(overwrite.status, StatusCode::NOT_FOUND);

    let scope = harmony_core::db::TenantScope::clinic(owner.tenant_id);
    let (kernel, tenant, id) = (&app.kernel, owner.tenant_id, patient.parse().unwrap());
    kernel
        .db
        .tenant(scope, |conn| {
            use scoped_futures::ScopedFutureExt;
            async move { harmony_patients::service::shred_personal_data(conn, kernel, tenant, id).await }.scope_boxed()
        })
        .await
        .unwrap();
    assert_eq!(
        owner
            .get(&format!("/api/v1/patients/{patient}/photo"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    let mut body = kind.to_vec();
    body.extend_from_slice(data);
    chunk.extend_from_slice(&body);
    chunk.extend(crc32(&body).to_be_bytes());
    chunk
}

/// A 1x1 PNG with an eXIf chunk and a text chunk.
fn png_with_metadata(width: u32, height: u32) -> Vec<u8> {
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = width.to_be_bytes().to_vec();
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    png.extend(png_chunk(b"IHDR", &ihdr));
    png.extend(png_chunk(b"eXIf", b"MM\0*\0\0\0\x08GPSLatitude -23.55"));
    png.extend(png_chunk(b"tEXt", b"Comment\0taken at the patient's home"));
    png.extend(png_chunk(
        b"IDAT",
        &[0x78, 0x9C, 0x63, 0xF8, 0x0F, 0x00, 0x01, 0x01, 0x01, 0x00],
    ));
    png.extend(png_chunk(b"IEND", b""));
    png
}

#[tokio::test(flavor = "multi_thread")]
async fn png_metadata_is_removed_and_huge_dimensions_refused_without_decoding() {
    let app = TestApp::start().await;
    let owner = app.signup("Clínica Aurora").await;
    let patient = new_patient(&owner).await;

    let stored = upload(&owner, &patient, png_with_metadata(1, 1), "image/png").await;
    assert_eq!(stored.status, StatusCode::CREATED, "{}", stored.body);
    let bytes = owner
        .raw(Method::GET, &format!("/api/v1/patients/{patient}/photo"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let contains = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"IHDR") && contains(b"IDAT"));
    assert!(!contains(b"eXIf") && !contains(b"GPSLatitude") && !contains(b"patient's home"));

    // A header announcing 30,000 x 30,000 pixels is refused from the header alone.
    let bomb = upload(
        &owner,
        &patient,
        png_with_metadata(30_000, 30_000),
        "image/png",
    )
    .await;
    assert_eq!(
        bomb.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        bomb.body
    );
    assert_eq!(bomb.body["errors"][0]["field"], "body");
}
