//! Profile photos: checked by their bytes (JPEG, PNG, WebP, HEIC), bounded in size and
//! pixels without being decoded, stripped of EXIF (GPS included) and other metadata,
//! encrypted under the patient's key, stored under a server-chosen name, and served back
//! only as an attachment within the clinic.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use harmony_core::Kernel;
use harmony_core::audit::{self, Access};
use harmony_core::auth::BearerAuth;
use harmony_core::error::Error;
use harmony_core::http::{ApiResult, Problem};
use poem::http::StatusCode;
use poem::web::Data;
use poem_openapi::param::Path;
use poem_openapi::payload::{Attachment, AttachmentType, Binary, Json};
use poem_openapi::{ApiResponse, Object, OpenApi};
use scoped_futures::ScopedFutureExt;
use uuid::Uuid;

use crate::schema::{patient_photos, patients};
use crate::{PatientTags, perm};

/// Larger images are refused: decoding them would take too much memory.
const MAX_PIXELS: u64 = 40_000_000;
const MAX_SIDE: usize = 20_000;

/// A stored photo.
#[derive(Debug, Object)]
pub struct PhotoInfo {
    pub id: Uuid,
    /// The detected type: `image/jpeg`, `image/png`, `image/webp` or `image/heic`.
    pub content_type: String,
    pub size_bytes: i32,
    pub width: i32,
    pub height: i32,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, ApiResponse)]
pub enum PhotoStored {
    #[oai(status = 201)]
    Stored(Json<PhotoInfo>),
}

/// The kinds of image accepted, by their bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Jpeg,
    Png,
    Webp,
    Heic,
}

impl Kind {
    fn sniff(bytes: &[u8]) -> Option<Kind> {
        match infer::get(bytes)?.mime_type() {
            "image/jpeg" => Some(Kind::Jpeg),
            "image/png" => Some(Kind::Png),
            "image/webp" => Some(Kind::Webp),
            "image/heif" | "image/heic" => Some(Kind::Heic),
            _ => None,
        }
    }

    fn mime(self) -> &'static str {
        match self {
            Kind::Jpeg => "image/jpeg",
            Kind::Png => "image/png",
            Kind::Webp => "image/webp",
            Kind::Heic => "image/heic",
        }
    }

    fn extension(self) -> &'static str {
        match self {
            Kind::Jpeg => "jpg",
            Kind::Png => "png",
            Kind::Webp => "webp",
            Kind::Heic => "heic",
        }
    }
}

fn unsupported() -> Problem {
    Problem::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_file_type",
        "body: the file is not a JPEG, PNG, WebP or HEIC image (judged by its bytes, not its name)",
    )
}

/// Removes EXIF (GPS included), XMP, IPTC and comments, keeping what rendering needs.
/// `None` when the file's structure cannot be read.
fn strip_metadata(kind: Kind, bytes: Vec<u8>) -> Option<Vec<u8>> {
    let stripped = match kind {
        Kind::Jpeg => {
            let mut jpeg = img_parts::jpeg::Jpeg::from_bytes(Bytes::from(bytes)).ok()?;
            // Keep JFIF (APP0), ICC profiles (APP2) and Adobe colour data (APP14).
            jpeg.segments_mut().retain(|s| {
                let m = s.marker();
                !((0xE1..=0xEF).contains(&m) && m != 0xE2 && m != 0xEE || m == 0xFE)
            });
            jpeg.encoder().bytes().to_vec()
        }
        Kind::Png => {
            let mut png = img_parts::png::Png::from_bytes(Bytes::from(bytes)).ok()?;
            png.chunks_mut()
                .retain(|c| !matches!(&c.kind(), b"eXIf" | b"tEXt" | b"zTXt" | b"iTXt" | b"tIME"));
            png.encoder().bytes().to_vec()
        }
        Kind::Webp => {
            let mut webp = img_parts::webp::WebP::from_bytes(Bytes::from(bytes)).ok()?;
            webp.chunks_mut()
                .retain(|c| !matches!(&c.id(), b"EXIF" | b"XMP "));
            webp.encoder().bytes().to_vec()
        }
        Kind::Heic => {
            let mut bytes = bytes;
            heif::scrub_metadata(&mut bytes).ok()?;
            bytes
        }
    };
    Some(stripped)
}

#[derive(Debug, Clone, Copy)]
pub struct PhotosApi;

#[OpenApi(prefix_path = "/api/v1", tag = "PatientTags::Patients")]
impl PhotosApi {
    /// Upload the patient's profile photo
    ///
    /// Send the image itself as the body. JPEG, PNG, WebP and HEIC are accepted, judged by
    /// their bytes; metadata (EXIF with GPS, XMP, comments) is removed before storing.
    /// Replaces any previous profile photo.
    ///
    /// Permission: `patient_photos:upload`.
    #[oai(
        path = "/patients/:id/photo",
        method = "put",
        operation_id = "upload_patient_photo"
    )]
    async fn upload_patient_photo(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
        body: Binary<Vec<u8>>,
    ) -> ApiResult<PhotoStored> {
        let actor = kernel.authorize(&auth, &perm::PHOTO_UPLOAD).await?;
        let bytes = body.0;
        if bytes.len() > kernel.config.storage.max_upload_bytes {
            return Err(Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the file is too large",
            ));
        }
        let kind = Kind::sniff(&bytes).ok_or_else(unsupported)?;
        let size = imagesize::blob_size(&bytes).map_err(|_| unsupported())?;
        if size.width > MAX_SIDE
            || size.height > MAX_SIDE
            || (size.width as u64) * (size.height as u64) > MAX_PIXELS
        {
            return Err(Error::invalid(
                "body",
                "an image of at most 40 megapixels and 20,000 pixels a side",
            )
            .into());
        }
        let clean = strip_metadata(kind, bytes).ok_or_else(unsupported)?;

        let kernel_ref: &Kernel = &kernel;
        let actor_ref = &actor;
        let info = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let previous: Option<Option<Uuid>> = patients::table
                        .filter(patients::id.eq(id.0))
                        .select(patients::photo_id)
                        .first(conn)
                        .await
                        .optional()?;
                    let Some(previous) = previous else {
                        return Err(Error::NotFound { what: "patient" });
                    };
                    let cipher = kernel_ref
                        .crypto
                        .subject(conn, actor_ref.tenant_id, id.0)
                        .await?
                        .ok_or_else(crate::records::erased)?;
                    let photo = Uuid::now_v7();
                    let key = harmony_core::storage::new_key(actor_ref.tenant_id, "patient-photos");
                    kernel_ref.storage.put(&cipher, &key, &clean).await?;
                    let created_at: DateTime<Utc> = diesel::insert_into(patient_photos::table)
                        .values((
                            patient_photos::tenant_id.eq(actor_ref.tenant_id),
                            patient_photos::id.eq(photo),
                            patient_photos::patient_id.eq(id.0),
                            patient_photos::storage_key.eq(&key),
                            patient_photos::content_type.eq(kind.mime()),
                            patient_photos::size_bytes.eq(clean.len() as i32),
                            patient_photos::width.eq(size.width as i32),
                            patient_photos::height.eq(size.height as i32),
                            patient_photos::created_by.eq(actor_ref.user_id),
                        ))
                        .returning(patient_photos::created_at)
                        .get_result(conn)
                        .await?;
                    diesel::update(patients::table.filter(patients::id.eq(id.0)))
                        .set((
                            patients::photo_id.eq(photo),
                            patients::updated_at.eq(Utc::now()),
                        ))
                        .execute(conn)
                        .await?;
                    if let Some(old) = previous {
                        remove_photo(conn, kernel_ref, old).await?;
                    }
                    let access = Access {
                        subject_kind: Some("patient"),
                        subject_id: Some(id.0),
                        resource: "patient.photo",
                        action: "upload",
                    };
                    audit::record(conn, actor_ref, access).await?;
                    Ok::<_, Error>(PhotoInfo {
                        id: photo,
                        content_type: kind.mime().into(),
                        size_bytes: clean.len() as i32,
                        width: size.width as i32,
                        height: size.height as i32,
                        created_at,
                    })
                }
                .scope_boxed()
            })
            .await?;
        Ok(PhotoStored::Stored(Json(info)))
    }

    /// Download the patient's profile photo
    ///
    /// Served as an attachment. Writes an audit event.
    ///
    /// Permission: `patient_photos:read`.
    #[oai(
        path = "/patients/:id/photo",
        method = "get",
        operation_id = "download_patient_photo"
    )]
    async fn download_patient_photo(
        &self,
        kernel: Data<&Kernel>,
        auth: BearerAuth,
        id: Path<Uuid>,
    ) -> ApiResult<Attachment<Vec<u8>>> {
        let actor = kernel.authorize(&auth, &perm::PHOTO_READ).await?;
        let kernel_ref: &Kernel = &kernel;
        let actor_ref = &actor;
        let (bytes, content_type) = kernel
            .db
            .tenant(actor.scope(), |conn| {
                async move {
                    let row: Option<(String, String)> = patients::table
                        .inner_join(
                            patient_photos::table.on(patient_photos::tenant_id
                                .eq(patients::tenant_id)
                                .and(patient_photos::id.nullable().eq(patients::photo_id))),
                        )
                        .filter(patients::id.eq(id.0))
                        .select((patient_photos::storage_key, patient_photos::content_type))
                        .first(conn)
                        .await
                        .optional()?;
                    let (key, content_type) = row.ok_or(Error::NotFound { what: "photo" })?;
                    let cipher = kernel_ref
                        .crypto
                        .open_subject(conn, actor_ref.tenant_id, id.0)
                        .await?
                        .ok_or(Error::NotFound { what: "photo" })?;
                    let bytes = kernel_ref.storage.get(&cipher, &key).await?;
                    let access = Access {
                        subject_kind: Some("patient"),
                        subject_id: Some(id.0),
                        resource: "patient.photo",
                        action: "read",
                    };
                    audit::record(conn, actor_ref, access).await?;
                    Ok::<_, Error>((bytes, content_type))
                }
                .scope_boxed()
            })
            .await?;
        let extension = [Kind::Jpeg, Kind::Png, Kind::Webp, Kind::Heic]
            .into_iter()
            .find(|k| k.mime() == content_type)
            .map_or("bin", Kind::extension);
        Ok(Attachment::new(bytes)
            .attachment_type(AttachmentType::Attachment)
            .filename(format!("photo.{extension}")))
    }
}

/// Deletes a replaced photo's blob and row.
async fn remove_photo(
    conn: &mut harmony_core::db::Conn,
    kernel: &Kernel,
    photo: Uuid,
) -> Result<(), Error> {
    let key: Option<String> =
        diesel::delete(patient_photos::table.filter(patient_photos::id.eq(photo)))
            .returning(patient_photos::storage_key)
            .get_result(conn)
            .await
            .optional()?;
    if let Some(key) = key {
        kernel.storage.delete(&key).await?;
    }
    Ok(())
}

/// HEIF/HEIC (ISO base media file format): blanks the Exif and XMP items in place, so the
/// file keeps its structure and offsets and no decoder is needed.
mod heif {
    #[derive(Debug)]
    pub struct Malformed;

    /// (type, payload start, end) of each box in `data[from..to]`.
    fn boxes(
        data: &[u8],
        from: usize,
        to: usize,
    ) -> Result<Vec<([u8; 4], usize, usize)>, Malformed> {
        let mut out = Vec::new();
        let mut at = from;
        while at + 8 <= to {
            let size32 =
                u32::from_be_bytes(data[at..at + 4].try_into().map_err(|_| Malformed)?) as usize;
            let kind: [u8; 4] = data[at + 4..at + 8].try_into().map_err(|_| Malformed)?;
            let (header, size) = match size32 {
                0 => (8, to - at),
                1 => {
                    let large = data.get(at + 8..at + 16).ok_or(Malformed)?;
                    (
                        16,
                        u64::from_be_bytes(large.try_into().map_err(|_| Malformed)?) as usize,
                    )
                }
                n => (8, n),
            };
            if size < header || at + size > to {
                return Err(Malformed);
            }
            out.push((kind, at + header, at + size));
            at += size;
        }
        Ok(out)
    }

    struct Reader<'a> {
        data: &'a [u8],
        at: usize,
        end: usize,
    }

    impl Reader<'_> {
        fn uint(&mut self, bytes: usize) -> Result<u64, Malformed> {
            if bytes > 8 || self.at + bytes > self.end {
                return Err(Malformed);
            }
            let value = self.data[self.at..self.at + bytes]
                .iter()
                .fold(0u64, |v, b| (v << 8) | u64::from(*b));
            self.at += bytes;
            Ok(value)
        }
    }

    /// Item ids whose payload is metadata: `Exif` items and XMP (`mime` with RDF).
    fn metadata_items(data: &[u8], start: usize, end: usize) -> Result<Vec<u64>, Malformed> {
        let version = *data.get(start).ok_or(Malformed)?;
        let mut r = Reader {
            data,
            at: start + 4,
            end,
        };
        let _count = r.uint(if version == 0 { 2 } else { 4 })?;
        let mut items = Vec::new();
        for (kind, s, e) in boxes(data, r.at, end)? {
            if &kind != b"infe" || data.get(s).copied().unwrap_or(0) < 2 {
                continue;
            }
            let v = data[s];
            let mut r = Reader {
                data,
                at: s + 4,
                end: e,
            };
            let id = r.uint(if v == 2 { 2 } else { 4 })?;
            r.uint(2)?;
            let item_type = data.get(r.at..r.at + 4).ok_or(Malformed)?;
            let rest = &data[r.at + 4..e];
            let xmp = item_type == b"mime" && rest.windows(19).any(|w| w == b"application/rdf+xml");
            if item_type == b"Exif" || xmp {
                items.push(id);
            }
        }
        Ok(items)
    }

    /// (construction method, absolute ranges) of each item in `iloc`.
    fn locations(
        data: &[u8],
        start: usize,
        end: usize,
        idat: Option<usize>,
    ) -> Result<Vec<(u64, Vec<(usize, usize)>)>, Malformed> {
        let version = *data.get(start).ok_or(Malformed)?;
        let mut r = Reader {
            data,
            at: start + 4,
            end,
        };
        let sizes = r.uint(1)?;
        let (offset_size, length_size) = ((sizes >> 4) as usize, (sizes & 0xF) as usize);
        let sizes = r.uint(1)?;
        let (base_size, index_size) = ((sizes >> 4) as usize, (sizes & 0xF) as usize);
        let count = r.uint(if version < 2 { 2 } else { 4 })?;
        let mut out = Vec::new();
        for _ in 0..count {
            let id = r.uint(if version < 2 { 2 } else { 4 })?;
            let method = if version == 1 || version == 2 {
                r.uint(2)? & 0xF
            } else {
                0
            };
            r.uint(2)?;
            let base = r.uint(base_size)? as usize;
            let extents = r.uint(2)?;
            let origin = match method {
                0 => 0,
                1 => idat.ok_or(Malformed)?,
                _ => return Err(Malformed),
            };
            let mut ranges = Vec::new();
            for _ in 0..extents {
                if (version == 1 || version == 2) && index_size > 0 {
                    r.uint(index_size)?;
                }
                let offset = r.uint(offset_size)? as usize;
                let length = r.uint(length_size)? as usize;
                let from = origin + base + offset;
                ranges.push((from, from + length));
            }
            out.push((id, ranges));
        }
        Ok(out)
    }

    /// Overwrites every metadata item's bytes with zeros.
    pub fn scrub_metadata(data: &mut [u8]) -> Result<(), Malformed> {
        let top = boxes(data, 0, data.len())?;
        let (_, meta_start, meta_end) =
            *top.iter().find(|(k, _, _)| k == b"meta").ok_or(Malformed)?;
        let children = boxes(data, meta_start + 4, meta_end)?;
        let find = |name: &[u8; 4]| {
            children
                .iter()
                .find(|(k, _, _)| k == name)
                .map(|(_, s, e)| (*s, *e))
        };
        let Some((iinf_start, iinf_end)) = find(b"iinf") else {
            return Ok(());
        };
        let targets = metadata_items(data, iinf_start, iinf_end)?;
        if targets.is_empty() {
            return Ok(());
        }
        let (iloc_start, iloc_end) = find(b"iloc").ok_or(Malformed)?;
        let idat = find(b"idat").map(|(s, _)| s);
        for (id, ranges) in locations(data, iloc_start, iloc_end, idat)? {
            if !targets.contains(&id) {
                continue;
            }
            for (from, to) in ranges {
                data.get_mut(from..to).ok_or(Malformed)?.fill(0);
            }
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        fn boxed(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
            let mut out = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
            out.extend_from_slice(kind);
            out.extend_from_slice(payload);
            out
        }

        fn full(kind: &[u8; 4], version: u8, payload: &[u8]) -> Vec<u8> {
            let mut p = vec![version, 0, 0, 0];
            p.extend_from_slice(payload);
            boxed(kind, &p)
        }

        /// A HEIC with an image item and an Exif item whose bytes live in `mdat`.
        fn sample() -> (Vec<u8>, std::ops::Range<usize>, std::ops::Range<usize>) {
            let image = b"IMAGE-DATA-IMAGE-DATA".to_vec();
            let exif = b"Exif\0\0MM GPSLatitude -23.5505 GPSLongitude -46.6333".to_vec();
            let ftyp = boxed(b"ftyp", b"heic\0\0\0\0mif1heic");
            let infe = |id: u16, kind: &[u8; 4]| {
                let mut p = id.to_be_bytes().to_vec();
                p.extend_from_slice(&[0, 0]);
                p.extend_from_slice(kind);
                p.push(0);
                full(b"infe", 2, &p)
            };
            let mut iinf_payload = 2u16.to_be_bytes().to_vec();
            iinf_payload.extend(infe(1, b"hvc1"));
            iinf_payload.extend(infe(2, b"Exif"));
            let iinf = full(b"iinf", 0, &iinf_payload);
            let hdlr = full(b"hdlr", 0, b"\0\0\0\0pict\0\0\0\0\0\0\0\0\0\0\0\0\0");
            let iloc_len = 4 + 2 + 2 + 2 * (2 + 2 + 2 + 4 + 4) + 8;
            let meta_len = 8 + 4 + hdlr.len() + iinf.len() + iloc_len;
            let mdat_payload_start = ftyp.len() + meta_len + 8;
            let image_at = mdat_payload_start;
            let exif_at = image_at + image.len();
            let mut iloc_payload = vec![0x44, 0x00];
            iloc_payload.extend(2u16.to_be_bytes());
            for (id, at, len) in [(1u16, image_at, image.len()), (2u16, exif_at, exif.len())] {
                iloc_payload.extend(id.to_be_bytes());
                iloc_payload.extend(0u16.to_be_bytes());
                iloc_payload.extend(1u16.to_be_bytes());
                iloc_payload.extend((at as u32).to_be_bytes());
                iloc_payload.extend((len as u32).to_be_bytes());
            }
            let iloc = full(b"iloc", 0, &iloc_payload);
            let mut meta_payload = Vec::new();
            meta_payload.extend(hdlr);
            meta_payload.extend(iinf);
            meta_payload.extend(iloc);
            let meta = full(b"meta", 0, &meta_payload);
            assert_eq!(meta.len(), meta_len);
            let mut mdat_payload = image.clone();
            mdat_payload.extend(&exif);
            let mut file = ftyp;
            file.extend(meta);
            file.extend(boxed(b"mdat", &mdat_payload));
            (
                file,
                image_at..image_at + image.len(),
                exif_at..exif_at + exif.len(),
            )
        }

        #[test]
        fn exif_items_are_blanked_and_the_image_is_untouched() {
            let (mut file, image, exif) = sample();
            let before = file.clone();
            assert!(file.windows(11).any(|w| w == b"GPSLatitude"));
            super::scrub_metadata(&mut file).unwrap();
            assert!(!file.windows(11).any(|w| w == b"GPSLatitude"));
            assert!(file[exif].iter().all(|b| *b == 0));
            assert_eq!(file[image.clone()], before[image]);
            assert_eq!(file.len(), before.len());
        }

        #[test]
        fn truncated_files_are_refused() {
            let (file, _, _) = sample();
            let mut cut = file[..file.len() - 30].to_vec();
            assert!(super::scrub_metadata(&mut cut).is_err());
        }
    }
}
