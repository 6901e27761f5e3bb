/**
 * A secured Kafka node of the local stack (pure settings): clients (and the other regions, on
 * the peer listener) speak SASL_SSL with SCRAM; the controller listener speaks TLS with client
 * certificates, the broker showing its own; KRaft's StandardAuthorizer refuses whatever no ACL
 * allows. The bootstrap admin's SCRAM credential is written into the metadata log when the node
 * is formatted (`kafka-storage format --add-scram`), so it can log in before any user exists;
 * `brabant node init` creates the services' users and ACLs as that admin.
 */

import { pbkdf2Sync, randomBytes } from 'node:crypto';

/** The files a secured Kafka node is given (paths; the secrets stay in their files). */
export interface KafkaSecuritySpec {
  /** PKCS12 keystore with the broker's certificate and key. */
  keystore: string;
  /** File holding the keystore's password. */
  keystorePasswordFile: string;
  /** PEM file of the CA (the truststore: brokers' and clients' certificates). */
  ca: string;
  /** The broker's certificate subject as Kafka names its principal (a super user). */
  brokerPrincipal: string;
  adminUser: string;
  adminPasswordFile: string;
  mechanism: 'SCRAM-SHA-512' | 'SCRAM-SHA-256';
}

/** The values of the template's listener placeholders, secured or not. */
export function listenerSettings(secured: boolean, peer: boolean): { client: string; protocolMap: string } {
  if (!secured)
    return { client: 'PLAINTEXT', protocolMap: 'PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,PEER:PLAINTEXT' };
  return {
    client: 'CLIENT',
    protocolMap: `CLIENT:SASL_SSL,CONTROLLER:SSL${peer ? ',PEER:SASL_SSL' : ''}`,
  };
}

const jaas = (user: string, password: string) =>
  `org.apache.kafka.common.security.scram.ScramLoginModule required username=${JSON.stringify(user)} password=${JSON.stringify(password)};`;

/** The `${SECURITY}` block of server.properties (holds the admin's and the keystore's password: mode 0600). */
export function securityProperties(
  s: KafkaSecuritySpec,
  secrets: { keystorePassword: string; adminPassword: string },
  peer: boolean,
): string {
  const mech = s.mechanism.toLowerCase();
  const lines = [
    '############################ Security (brabant up without --insecure) ############################',
    `sasl.enabled.mechanisms=${s.mechanism}`,
    `sasl.mechanism.inter.broker.protocol=${s.mechanism}`,
    // the broker's own connections to itself on the client listener log in as the admin
    `listener.name.client.${mech}.sasl.jaas.config=${jaas(s.adminUser, secrets.adminPassword)}`,
    ...(peer
      ? [`listener.name.peer.${mech}.sasl.jaas.config=${jaas(s.adminUser, secrets.adminPassword)}`]
      : []),
    'ssl.keystore.type=PKCS12',
    `ssl.keystore.location=${s.keystore}`,
    `ssl.keystore.password=${secrets.keystorePassword}`,
    'ssl.truststore.type=PEM',
    `ssl.truststore.location=${s.ca}`,
    // clients check the broker's name against its certificate (the default, said for the reader)
    'ssl.endpoint.identification.algorithm=https',
    // the controller listener: only holders of a certificate of this CA, the broker's in practice
    'listener.name.controller.ssl.client.auth=required',
    'authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer',
    `super.users=User:${s.adminUser};User:${s.brokerPrincipal}`,
    'allow.everyone.if.no.acl.found=false',
  ];
  return lines.join('\n');
}

/**
 * The StorageTool arguments that write the admin's SCRAM credential at format time: its salted
 * password (PBKDF2, as SCRAM stores it), not the password, so the command line (`ps`) shows no
 * secret.
 */
export function formatScramArgs(
  s: KafkaSecuritySpec,
  adminPassword: string,
  salt: Buffer = randomBytes(16),
  iterations = 8192,
): string[] {
  const hash = s.mechanism === 'SCRAM-SHA-512' ? 'sha512' : 'sha256';
  const salted = pbkdf2Sync(adminPassword, salt, iterations, hash === 'sha512' ? 64 : 32, hash);
  return [
    '--add-scram',
    `${s.mechanism}=[name=${s.adminUser},iterations=${iterations},salt="${salt.toString('base64')}",saltedpassword="${salted.toString('base64')}"]`,
  ];
}

/** A Kafka client's properties (Kafka's own tools) to log in as `user` over SASL_SSL. */
export function clientProperties(
  ca: string,
  mechanism: KafkaSecuritySpec['mechanism'],
  user: string,
  password: string,
): string {
  return [
    'security.protocol=SASL_SSL',
    `sasl.mechanism=${mechanism}`,
    `sasl.jaas.config=${jaas(user, password)}`,
    'ssl.truststore.type=PEM',
    `ssl.truststore.location=${ca}`,
    '',
  ].join('\n');
}
