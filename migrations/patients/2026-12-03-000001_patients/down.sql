DROP TABLE patient_photos;
DROP TABLE guardians;
DROP TABLE patients;
DROP TABLE referral_origins;
