// JDBC through pgward: run by test/interop.test.ts as `java -cp postgresql.jar Interop.java URL USER TOKEN`.
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.Properties;

public class Interop {
  public static void main(String[] args) throws Exception {
    Properties props = new Properties();
    props.setProperty("user", args[1]);
    props.setProperty("password", args[2]);
    props.setProperty("sslmode", "require");
    props.setProperty("ApplicationName", "jdbc-interop");
    try (Connection c = DriverManager.getConnection(args[0], props)) {
      try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("select current_user")) {
        r.next();
        System.out.println("user=" + r.getString(1));
      }
      // Past prepareThreshold (5) pgjdbc switches to a named server-side prepared statement.
      try (PreparedStatement p = c.prepareStatement("select username from users where id = ?")) {
        for (int i = 0; i < 8; i++) {
          p.setInt(1, 1);
          try (ResultSet r = p.executeQuery()) {
            r.next();
            if (!r.getString(1).equals("john_doe")) throw new IllegalStateException("wrong row");
          }
        }
        System.out.println("prepared=ok");
      }
      c.setAutoCommit(false);
      try (PreparedStatement p = c.prepareStatement("insert into users (username, email) values (?, ?)")) {
        for (int i = 0; i < 3; i++) {
          p.setString(1, "jdbc_" + i);
          p.setString(2, "jdbc_" + i + "@example.com");
          p.addBatch();
        }
        System.out.println("batch=" + p.executeBatch().length);
      }
      c.rollback();
      c.setAutoCommit(true);
      try (Statement s = c.createStatement()) {
        s.executeQuery("select 1/0");
      } catch (SQLException e) {
        System.out.println("error=" + e.getSQLState());
      }
      try (Statement s = c.createStatement(); ResultSet r = s.executeQuery("select 42")) {
        r.next();
        System.out.println("after-error=" + r.getInt(1));
      }
    }
  }
}
