//! The Lambda code: upload the zip to the code bucket, update the stack's functions to it.

use super::*;

/// Upload the Lambda zip to the code bucket (`zae-limiter-code-{account}-{region}`, created
/// when missing) under a key naming its content; returns (bucket, key).
pub async fn upload_code(
    aws: &Aws,
    stack: &str,
    zip: &[u8],
) -> Result<(String, String), StackError> {
    let account = aws
        .sts
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| StackError(format!("asking STS for the account: {}", sdk_line(&e))))?
        .account()
        .unwrap_or("000000000000")
        .to_string();
    let region = aws.region();
    let bucket = format!("zae-limiter-code-{account}-{region}");
    if aws.s3.head_bucket().bucket(&bucket).send().await.is_err() {
        let mut req = aws.s3.create_bucket().bucket(&bucket);
        if region != "us-east-1" {
            req = req.create_bucket_configuration(
                aws_sdk_s3::types::CreateBucketConfiguration::builder()
                    .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::from(
                        region.as_str(),
                    ))
                    .build(),
            );
        }
        req.send()
            .await
            .map_err(|e| StackError(format!("creating code bucket {bucket}: {}", sdk_line(&e))))?;
    }
    let key = format!(
        "{stack}/bootstrap-{CLIENT_VERSION}-{:08x}.zip",
        crate::package::crc32(zip)
    );
    aws.s3
        .put_object()
        .bucket(&bucket)
        .key(&key)
        .body(aws_sdk_s3::primitives::ByteStream::from(zip.to_vec()))
        .send()
        .await
        .map_err(|e| {
            StackError(format!(
                "uploading the Lambda code to s3://{bucket}/{key}: {}",
                sdk_line(&e)
            ))
        })?;
    Ok((bucket, key))
}

/// Point the functions of stack `stack` (those that exist) at new code and tag them with
/// this client's version; returns the names updated.
pub async fn update_functions(
    aws: &Aws,
    stack: &str,
    bucket: &str,
    key: &str,
) -> Result<Vec<String>, StackError> {
    let mut done = Vec::new();
    for f in [
        format!("{stack}-aggregator"),
        format!("{stack}-limits-provisioner"),
    ] {
        let arn = match aws.lambda.get_function().function_name(&f).send().await {
            Ok(out) => out
                .configuration()
                .and_then(|c| c.function_arn())
                .unwrap_or_default()
                .to_string(),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_resource_not_found_exception()) =>
            {
                continue
            }
            Err(e) => {
                return Err(StackError(format!(
                    "reading function {f}: {}",
                    sdk_line(&e)
                )))
            }
        };
        aws.lambda
            .update_function_code()
            .function_name(&f)
            .s3_bucket(bucket)
            .s3_key(key)
            .send()
            .await
            .map_err(|e| StackError(format!("updating the code of {f}: {}", sdk_line(&e))))?;
        aws.lambda
            .tag_resource()
            .resource(&arn)
            .tags("zae-limiter:lambda-version", CLIENT_VERSION)
            .send()
            .await
            .map_err(|e| StackError(format!("tagging {f}: {}", sdk_line(&e))))?;
        done.push(f);
    }
    Ok(done)
}
